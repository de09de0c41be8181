"""Comments, attachments and share links: what a member, a stranger and a board member without an account see."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from escalations.collaboration import attachments, comments, sharing
from escalations.collaboration.models import Attachment, Comment, ShareLinkView
from escalations.models import Notification
from governance import tenancy
from governance.models import AuditEvent
from tests.factories import KpiFactory

pytestmark = pytest.mark.django_db

XSS = [
    "<script>alert('x')</script>",
    "[click](javascript:alert('x'))",
    "<img src=x onerror=alert('x')>",
    "![x](javascript:alert('x'))",
    '<a href="https://example.com" onclick="alert(1)">x</a>',
    "<javascript:alert('x')>",
]


def _comments_url(t, target="kpi", pk=None):
    return reverse("collaboration:comment_list", args=[t.org.slug, target, pk or t.kpi.pk])


@pytest.mark.parametrize("payload", XSS)
def test_it_renders_xss_payloads_inert(tenant, payload):
    client = tenant.client(tenant.member)
    assert client.post(_comments_url(tenant), {"body": payload}).status_code == 302
    html = client.get(_comments_url(tenant)).content.decode()
    body = html.split('class="comment-body">', 1)[1].split("</div>", 1)[0]
    tags = re.findall(r"<[^>]+>", body)  # escaped text (&lt;img ...&gt;) is shown, not run
    assert not [t for t in tags if re.match(r"</?(script|img|iframe)", t) or re.search(r"\son\w+=", t)], tags
    assert "javascript:" not in re.sub(r"&[a-z#0-9]+;", "", "".join(re.findall(r'href="([^"]*)"', body)))


def test_links_are_nofollow(tenant):
    client = tenant.client(tenant.member)
    client.post(_comments_url(tenant), {"body": "See [the plan](https://example.com/plan)"})
    html = client.get(_comments_url(tenant)).content.decode()
    assert '<a href="https://example.com/plan" rel="nofollow noopener noreferrer">the plan</a>' in html


def _mentions(t):
    return Notification.objects.filter(recipient=t.lead, kind="mention")


def test_a_mention_notifies_once_also_after_an_edit(tenant):
    with tenancy.scope(organization=tenant.org.pk):
        comment = comments.comment_create(
            author=tenant.member, target=tenant.kpi, body=f"@{tenant.lead.user.email} can you look?"
        )
        # one per channel that reaches them: in the app and by email (Slack only once they link it)
        assert set(_mentions(tenant).values_list("channel", flat=True)) == {"in_app", "email"}
        first = set(_mentions(tenant).values_list("pk", flat=True))
        comments.comment_edit(
            comment=comment, by=tenant.member, body=f"@{tenant.lead.user.email} could you look, please?"
        )
    assert set(_mentions(tenant).values_list("pk", flat=True)) == first
    assert set(_mentions(tenant).values_list("dedup_key", flat=True)) == {
        f"comment:{comment.pk}:mention:{tenant.lead.pk}"
    }


def test_a_mention_of_a_stranger_notifies_nobody(tenant, stranger_tenant):
    with tenancy.scope(organization=tenant.org.pk):
        comments.comment_create(author=tenant.member, target=tenant.kpi, body=f"@{stranger_tenant.member.user.email}")
    assert not Notification.objects.filter(kind="mention").exists()


def test_a_mention_of_someone_who_may_not_see_the_kpi_notifies_nobody(tenant):
    tenant.scorecard.kpis.add(tenant.kpi)
    tenant.scorecard.viewers = ["role:executive"]
    tenant.scorecard.save()
    assert tenant.kpi.owner != tenant.member
    with tenancy.scope(organization=tenant.org.pk):
        comments.comment_create(
            author=tenant.executive, target=tenant.kpi, body=f"@{tenant.member.user.email} @{tenant.admin.user.email}"
        )
    assert set(Notification.objects.filter(kind="mention").values_list("recipient", flat=True)) == {tenant.admin.pk}


def test_an_edit_after_the_window_is_refused(tenant):
    with tenancy.scope(organization=tenant.org.pk):
        comment = comments.comment_create(author=tenant.member, target=tenant.kpi, body="first")
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        with tenancy.scope(organization=tenant.org.pk), pytest.raises(PermissionDenied):
            comments.comment_edit(comment=comment, by=tenant.member, body="changed")
        response = tenant.client(tenant.member).post(
            reverse("collaboration:comment_edit", args=[tenant.org.slug, comment.pk]), {"body": "changed"}
        )
    assert response.status_code == 403
    comment.refresh_from_db()
    assert comment.body == "first" and comment.edited_at is None


def test_nobody_but_the_author_edits(tenant):
    with tenancy.scope(organization=tenant.org.pk):
        comment = comments.comment_create(author=tenant.member, target=tenant.kpi, body="mine")
        with pytest.raises(PermissionDenied):
            comments.comment_edit(comment=comment, by=tenant.admin, body="theirs")


def test_a_deleted_comment_leaves_a_tombstone_and_the_audit_keeps_it(tenant):
    client = tenant.client(tenant.member)
    client.post(_comments_url(tenant), {"body": "Wrong number, sorry"})
    comment = Comment.objects.get(organization=tenant.org)
    client.post(reverse("collaboration:comment_delete", args=[tenant.org.slug, comment.pk]))
    html = client.get(_comments_url(tenant)).content.decode()
    assert f"Comment deleted by {tenant.member.user.name}" in html
    assert "Wrong number" not in html
    verbs = list(
        AuditEvent.objects.filter(organization=tenant.org, verb__startswith="comment.").values_list("verb", "before")
    )
    assert verbs == [("comment.created", None), ("comment.deleted", {"body": "Wrong number, sorry"})] or {
        v for v, _ in verbs
    } == {"comment.created", "comment.deleted"}


def test_mention_suggestions_list_members_of_this_organization_only(tenant, stranger_tenant):
    url = reverse("collaboration:mention_suggestions", args=[tenant.org.slug])
    html = tenant.client(tenant.member).get(url, {"body": "Hello @lead"}).content.decode()
    assert f"@{tenant.lead.user.email}" in html
    html = tenant.client(tenant.member).get(url, {"body": "Hello @"}).content.decode()
    assert stranger_tenant.member.user.email not in html and tenant.admin.user.email in html


def test_comments_on_each_target(tenant):
    client = tenant.client(tenant.member)
    targets = {
        "workstream": tenant.episode.workstream.pk,
        "path": tenant.episode.path.pk,
        "decision": tenant.review_session.decisions.first().pk,
    }
    for name, pk in targets.items():
        assert client.post(_comments_url(tenant, name, pk), {"body": f"on the {name}"}).status_code == 302
        assert f"on the {name}" in client.get(_comments_url(tenant, name, pk)).content.decode()
    assert client.get(_comments_url(tenant, "team", tenant.team.pk)).status_code == 404


# --- attachments ---------------------------------------------------------------------------------------------


def _upload(t, name: str, content: bytes, target="kpi", pk=None):
    url = reverse("collaboration:attachment_list", args=[t.org.slug, target, pk or t.kpi.pk])
    return t.client(t.member).post(url, {"file": SimpleUploadedFile(name, content)}, follow=True)


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "mime"),
    [
        ("evidence.pdf", b"%PDF-1.7\n1 0 obj\n", "application/pdf"),
        ("chart.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, "image/png"),
        ("data.csv", b"kpi,at,value\nthroughput,2026-01-01,3\n", "text/csv"),
        ("model.xlsx", _xlsx(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ],
)
def test_allowed_files_are_stored_with_their_sniffed_type(tenant, name, content, mime):
    response = _upload(tenant, name, content)
    assert f"Attached {name}" in response.content.decode()
    attachment = Attachment.objects.get(organization=tenant.org)
    assert (attachment.content_type, attachment.size) == (mime, len(content))


@pytest.mark.parametrize(
    "content",
    [b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 120 + b"PE\x00\x00", b"\x7fELF\x02\x01\x01" + b"\x00" * 60],
)
def test_a_disguised_executable_is_refused(tenant, content):
    response = _upload(tenant, "board-report.pdf", content)
    assert "board-report.pdf is a program, not a document" in response.content.decode()
    assert not Attachment.objects.exists()


def test_a_mismatched_name_or_a_binary_text_file_is_refused(tenant):
    assert "rename it to .pdf" in _upload(tenant, "chart.png", b"%PDF-1.7\n").content.decode()
    assert "not a file type that may be attached" in _upload(tenant, "notes.txt", b"a\x00b").content.decode()
    assert not Attachment.objects.exists()


def test_an_oversize_file_is_refused(tenant, settings):
    settings.ATTACHMENT_MAX_BYTES = 1024
    response = _upload(tenant, "big.txt", b"x" * 2048)
    assert "attachments may be at most 1 KB" in response.content.decode()
    assert not Attachment.objects.exists()


def test_members_download_through_the_app_and_strangers_get_404(tenant, stranger_tenant):
    _upload(tenant, "evidence.pdf", b"%PDF-1.7\nsecret")
    attachment = Attachment.objects.get()
    url = reverse("collaboration:attachment_download", args=[tenant.org.slug, attachment.pk])
    response = tenant.client(tenant.executive).get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.7\nsecret"
    assert response["Content-Disposition"] == 'attachment; filename="evidence.pdf"'
    assert response["Content-Type"] == "application/pdf"
    stranger = stranger_tenant.client(stranger_tenant.admin)
    assert stranger.get(url).status_code == 404
    own_url = reverse("collaboration:attachment_download", args=[stranger_tenant.org.slug, attachment.pk])
    assert stranger.get(own_url).status_code == 404


def test_evidence_on_a_mitigation_path(tenant):
    response = _upload(tenant, "plan.pdf", b"%PDF-1.7\n", target="path", pk=tenant.episode.path.pk)
    assert "Attached plan.pdf" in response.content.decode()
    html = (
        tenant.client(tenant.member)
        .get(reverse("collaboration:attachment_list", args=[tenant.org.slug, "path", tenant.episode.path.pk]))
        .content.decode()
    )
    assert "Evidence" in html and "plan.pdf" in html


def test_deleted_attachments_and_those_of_deleted_parents_are_purged_after_the_retention(tenant, settings):
    other = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="ops.other")
    with tenancy.scope(organization=tenant.org.pk):
        kept = attachments.attachment_add(by=tenant.member, target=tenant.kpi, upload=SimpleUploadedFile("a.txt", b"a"))
        deleted = attachments.attachment_add(
            by=tenant.member, target=tenant.kpi, upload=SimpleUploadedFile("b.txt", b"b")
        )
        orphan = attachments.attachment_add(by=tenant.member, target=other, upload=SimpleUploadedFile("c.txt", b"c"))
        attachments.attachment_delete(attachment=deleted, by=tenant.member)
    other.delete()
    storage = kept.file.storage
    assert attachments.attachments_purge() == 0  # within the retention: hidden, not gone
    assert storage.exists(deleted.file.name) and Attachment.objects.get(pk=orphan.pk).deleted_at is not None
    later = timezone.now() + settings.ATTACHMENT_RETENTION + timedelta(minutes=1)
    assert attachments.attachments_purge(now=later) == 2
    assert list(Attachment.objects.all()) == [kept]
    assert not storage.exists(deleted.file.name) and not storage.exists(orphan.file.name)


def test_an_organization_that_leaves_takes_its_files_along(tenant, stranger_tenant, django_capture_on_commit_callbacks):
    with tenancy.scope(organization=tenant.org.pk):
        attachment = attachments.attachment_add(
            by=tenant.member, target=tenant.kpi, upload=SimpleUploadedFile("a.txt", b"a")
        )
        comments.comment_create(author=tenant.member, target=tenant.kpi, body="bye")
        _link(tenant)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("delete_organization", org=tenant.org.slug, confirm=tenant.org.slug)
    assert not attachment.file.storage.exists(attachment.file.name)
    assert not Attachment.objects.exists() and not Comment.objects.exists()


# --- share links ---------------------------------------------------------------------------------------------


def _link(t, **kwargs):
    with tenancy.scope(organization=t.org.pk):
        return sharing.share_link_create(
            by=t.executive, scorecard=t.scorecard, label="Board", valid_for=timedelta(days=7), **kwargs
        )


def test_only_executives_and_admins_share(tenant):
    with tenancy.scope(organization=tenant.org.pk), pytest.raises(PermissionDenied):
        sharing.share_link_create(by=tenant.member, scorecard=tenant.scorecard, label="x", valid_for=timedelta(days=1))
    url = reverse("collaboration:share_link_list", args=[tenant.org.slug])
    assert tenant.client(tenant.member).get(url).status_code == 403
    response = tenant.client(tenant.executive).post(
        url, {"scorecard": tenant.scorecard.pk, "label": "Board", "valid_days": 7}
    )
    assert "Copy it now" in response.content.decode()


def test_the_shared_page_shows_the_scorecard_without_actions_or_names_beyond_owners(tenant):
    link, token = _link(tenant)
    tenant.scorecard.kpis.add(tenant.kpi)
    with tenancy.scope(organization=tenant.org.pk):
        comments.comment_create(author=tenant.member, target=tenant.kpi, body="internal remark")
    response = Client(REMOTE_ADDR="203.0.113.9").get(reverse("share", args=[token]))
    html = response.content.decode()
    assert response.status_code == 200
    assert tenant.kpi.name in html and tenant.kpi.owner.user.name in html and "<svg" in html
    assert "<form" not in html and "hx-post" not in html and "hx-get" not in html
    assert "/o/" not in html  # no way into the app
    others = {m.user.name for m in (tenant.admin, tenant.executive, tenant.member)} - {tenant.kpi.owner.user.name}
    assert not [name for name in others if name in html]
    assert "internal remark" not in html
    view = ShareLinkView.objects.get(link=link)
    assert view.outcome == "shown" and view.ip_hash == sharing.hash_address("203.0.113.9") and view.user is None


def test_an_expired_link_is_refused(tenant):
    link, token = _link(tenant)
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        response = Client().get(reverse("share", args=[token]))
    assert response.status_code == 410 and "This link has expired" in response.content.decode()
    assert tenant.kpi.name not in response.content.decode()
    assert ShareLinkView.objects.get(link=link).outcome == "expired"


def test_a_revoked_link_is_refused(tenant):
    link, token = _link(tenant)
    response = tenant.client(tenant.executive).post(
        reverse("collaboration:share_link_revoke", args=[tenant.org.slug, link.pk])
    )
    assert response.status_code == 302
    response = Client().get(reverse("share", args=[token]))
    assert response.status_code == 410 and "withdrawn" in response.content.decode()
    assert ShareLinkView.objects.get(link=link).outcome == "revoked"
    assert AuditEvent.objects.filter(organization=tenant.org, verb="share_link.revoked").count() == 1


def test_an_unknown_token_is_refused(tenant):
    response = Client().get(reverse("share", args=["not-a-token"]))
    assert response.status_code == 404 and "not valid" in response.content.decode()


def test_a_passcode_is_asked_and_a_wrong_one_refused(tenant):
    link, token = _link(tenant, passcode="board-2026")
    url = reverse("share", args=[token])
    visitor = Client()
    first = visitor.get(url)
    assert "needs a passcode" in first.content.decode() and tenant.kpi.name not in first.content.decode()
    wrong = visitor.post(url, {"passcode": "guess"})
    assert wrong.status_code == 403 and "not right" in wrong.content.decode()
    assert visitor.post(url, {"passcode": "board-2026"}).status_code == 302
    assert visitor.get(url).status_code == 200
    assert list(ShareLinkView.objects.filter(link=link).values_list("outcome", flat=True)) == [
        "shown",
        "wrong_passcode",
    ]
    assert link.passcode_hash != "board-2026" and "board-2026" not in link.passcode_hash


def test_passcode_guessing_is_throttled(tenant):
    _, token = _link(tenant, passcode="board-2026")
    visitor = Client(REMOTE_ADDR="198.51.100.7")
    url = reverse("share", args=[token])
    assert [visitor.post(url, {"passcode": f"guess-{i}"}).status_code for i in range(11)] == [403] * 10 + [429]
    assert visitor.post(url, {"passcode": "board-2026"}).status_code == 429  # even the right one, until the pause ends


def test_tv_mode_rotates_and_refreshes(tenant):
    response = tenant.client(tenant.member).get(reverse("collaboration:tv", args=[tenant.org.slug]))
    html = response.content.decode()
    assert response.status_code == 200 and 'http-equiv="refresh"' in html and tenant.scorecard.name in html
    _, token = _link(tenant)
    html = Client().get(reverse("share_tv", args=[token])).content.decode()
    assert 'http-equiv="refresh"' in html and "<form" not in html

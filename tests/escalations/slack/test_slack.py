"""Decisions from Slack: the same services, rules and record as the web, against a fake Slack on loopback."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from escalations.engine.timing import Policy
from escalations.models import (
    Decision,
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    MitigationPath,
    Notification,
    SlackLink,
    SlackMessage,
    Task,
    Workstream,
)
from escalations.notify.channels import RetryLater
from escalations.notify.fanout import Message, deliver_due, notify
from escalations.slack import services as slack_services
from escalations.slack.client import BOT_TOKEN
from escalations.workstreams import services
from governance import tenancy
from governance.models import AuditEvent, Secret
from governance.services.secrets import secret_set
from tests.escalations.slack.conftest import click, connect, payload_body, signed, submission
from tests.factories import KpiFactory

pytestmark = pytest.mark.django_db

INTERACTIVITY = "/slack/interactivity/"


def _announce(t, recipients, kind="escalation"):
    ws = t.episode.workstream
    notify(
        recipients=recipients,
        message=Message(kind=kind, subject=f"Escalation: {t.kpi.name}", body="Off track", url="/o/x/"),
        dedup_key=f"test:{kind}",
        workstream=ws,
    )
    deliver_due()


def _message(t, membership) -> SlackMessage:
    return SlackMessage.objects.filter(organization=t.org, recipient=membership).latest("pk")


def _buttons(blocks: list) -> list[str]:
    return [e.get("action_id") for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_it_connects_with_oauth_and_links_members_by_email(tenant, fake_slack):
    fake_slack.users_by_email |= {f"someone{i}@elsewhere.test": f"UX{i}" for i in range(250)}  # two pages
    installation = connect(tenant, fake_slack)
    assert len(fake_slack.called("users.list")) == 2
    assert installation.team_id == "T0ACME"
    exchange = fake_slack.called("oauth.v2.access")[0]
    assert exchange["code"] == "good-code" and exchange["_token"].startswith("Basic ")  # client id and secret
    with tenancy.scope(organization=tenant.org.pk):
        assert Secret.objects.for_org(tenant.org).filter(name="slack_bot_token").exists()
    linked = set(SlackLink.objects.filter(organization=tenant.org).values_list("membership_id", flat=True))
    assert linked == {tenant.executive.pk, tenant.lead.pk, tenant.admin.pk}  # the member has no Slack account
    assert AuditEvent.objects.filter(organization=tenant.org, verb="slack.connected").exists()


def test_only_linked_members_get_slack_rows(tenant, fake_slack):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive, tenant.member])
    slack_rows = Notification.objects.filter(organization=tenant.org, channel="slack")
    assert list(slack_rows.values_list("recipient_id", flat=True)) == [tenant.executive.pk]


def test_the_executive_gets_a_dm_with_the_decisions_and_the_author_never_sees_approve(tenant, fake_slack):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive, tenant.lead])
    posts = {p["channel"]: p for p in fake_slack.called("chat.postMessage")}
    executive = posts["DUT0ACMEEXEC"]
    assert _buttons(executive["blocks"]) == ["acknowledge", "approve", "reject", "open"]
    assert "Throughput" in str(executive["blocks"]) and "Value / target" in str(executive["blocks"])
    lead = posts["DUT0ACMELEAD"]  # the KPI's owner, who filed the path: four eyes
    assert "approve" not in _buttons(lead["blocks"])
    message = _message(tenant, tenant.executive)
    assert (message.channel, message.task_id, message.path_id) == (
        "DUT0ACMEEXEC",
        tenant.episode.task.pk,
        tenant.episode.path.pk,
    )


def test_a_click_on_acknowledge_acknowledges_through_the_service(
    tenant, fake_slack, eager, django_capture_on_commit_callbacks
):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed(INTERACTIVITY, payload_body(click("T0ACME", "UT0ACMEEXEC", "acknowledge", message.pk)))
    assert response.status_code == 200
    tenant.episode.task.refresh_from_db()
    assert tenant.episode.task.state == Task.State.ACKNOWLEDGED
    assert AuditEvent.objects.filter(organization=tenant.org, verb="task.acknowledged").exists()
    update = fake_slack.called("chat.update")[-1]
    assert update["ts"] == message.ts and "acknowledge" not in _buttons(update["blocks"])


def test_approve_opens_a_modal_and_its_reason_is_the_decisions(
    tenant, fake_slack, eager, django_capture_on_commit_callbacks
):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    signed(INTERACTIVITY, payload_body(click("T0ACME", "UT0ACMEEXEC", "approve", message.pk)))
    modal = fake_slack.called("views.open")[-1]
    assert modal["trigger_id"] == f"trigger-approve-{message.pk}" and modal["view"]["type"] == "modal"
    body = payload_body(submission("T0ACME", "UT0ACMEEXEC", "approve", message.pk, "Credible plan"))
    with django_capture_on_commit_callbacks(execute=True):
        assert signed(INTERACTIVITY, body).status_code == 200
    path = MitigationPath.objects.get(pk=tenant.episode.path.pk)
    assert path.state == MitigationPath.State.APPROVED and path.review_comment == "Credible plan"
    decision = Decision.objects.get(organization=tenant.org, path=path)
    assert decision.decided_by == tenant.executive.user and decision.reason == "Credible plan"
    outcome = str(fake_slack.called("chat.update")[-1]["blocks"])
    assert f"Approved by {tenant.executive.user.name}: Credible plan" in outcome


def test_a_reject_without_reason_is_refused_in_the_modal(tenant, fake_slack, eager):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    response = signed(INTERACTIVITY, payload_body(submission("T0ACME", "UT0ACMEEXEC", "reject", message.pk, "  ")))
    assert response.json()["response_action"] == "errors"
    assert MitigationPath.objects.get(pk=tenant.episode.path.pk).state == MitigationPath.State.SUBMITTED


def test_reject_with_reason_sends_the_path_back(tenant, fake_slack, eager, django_capture_on_commit_callbacks):
    connect(tenant, fake_slack)
    policy = Policy(mitigation_due=timedelta(days=2), ack_timeout=timedelta(hours=4), repeat=0, levels=())
    Workstream.objects.filter(pk=tenant.episode.workstream.pk).update(policy=policy.as_json())
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    body = payload_body(submission("T0ACME", "UT0ACMEEXEC", "reject", message.pk, "No owner for step 2"))
    with django_capture_on_commit_callbacks(execute=True):
        signed(INTERACTIVITY, body)
    assert MitigationPath.objects.get(pk=tenant.episode.path.pk).state == MitigationPath.State.REJECTED
    assert "Rejected by" in str(fake_slack.called("chat.update")[-1]["blocks"])


def test_the_authors_approve_is_refused_with_an_explanation(tenant, fake_slack, eager):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.lead])
    message = _message(tenant, tenant.lead)
    signed(INTERACTIVITY, payload_body(click("T0ACME", "UT0ACMELEAD", "approve", message.pk)))
    assert not fake_slack.called("views.open")
    signed(INTERACTIVITY, payload_body(submission("T0ACME", "UT0ACMELEAD", "approve", message.pk, "Mine is fine")))
    assert MitigationPath.objects.get(pk=tenant.episode.path.pk).state == MitigationPath.State.SUBMITTED
    told = fake_slack.called("chat.postEphemeral")
    assert len(told) == 2 and all(t["user"] == "UT0ACMELEAD" for t in told)
    assert not Decision.objects.filter(organization=tenant.org, path=tenant.episode.path).exists()


@pytest.mark.parametrize(
    ("secret", "age", "why"),
    [("wrong-secret", 0, "signature"), ("test-signing-secret", 6 * 60, "older than 5 minutes")],
)
def test_a_badly_signed_or_stale_request_is_refused(tenant, fake_slack, eager, secret, age, why):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    body = payload_body(click("T0ACME", "UT0ACMEEXEC", "acknowledge", message.pk))
    response = signed(INTERACTIVITY, body, secret=secret, at=int(time.time()) - age)
    assert response.status_code == 401 and why in response.content.decode()
    assert Task.objects.get(pk=tenant.episode.task.pk).state == Task.State.OPEN


def test_a_retried_request_acts_once(tenant, fake_slack, eager, django_capture_on_commit_callbacks):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    body = payload_body(submission("T0ACME", "UT0ACMEEXEC", "approve", message.pk, "Credible plan"))
    with django_capture_on_commit_callbacks(execute=True):
        signed(INTERACTIVITY, body)
        signed(INTERACTIVITY, body, retry=1)
        signed(INTERACTIVITY, body, retry=2)
    assert Decision.objects.filter(organization=tenant.org, path=tenant.episode.path).count() == 1
    assert not fake_slack.called("chat.postEphemeral")  # no "already approved": the retries did nothing


def test_a_decision_on_the_web_updates_the_slack_message(tenant, fake_slack, eager, django_capture_on_commit_callbacks):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.executive])
    message = _message(tenant, tenant.executive)
    with tenancy.scope(organization=tenant.org.pk), django_capture_on_commit_callbacks(execute=True):
        services.mitigation_path_review(
            path=tenant.episode.path, by=tenant.executive, approve=True, comment="On the web"
        )
    update = fake_slack.called("chat.update")[-1]
    assert (update["channel"], update["ts"]) == (message.channel, message.ts)
    assert "On the web" in str(update["blocks"]) and "approve" not in _buttons(update["blocks"])


def test_a_rate_limit_raises_retry_later_with_slacks_seconds(tenant, fake_slack):
    connect(tenant, fake_slack)
    _announce(tenant, [tenant.member])  # nothing for the unlinked member
    from escalations.notify.channels import slack

    row = Notification.objects.create(
        organization=tenant.org,
        recipient=tenant.executive,
        kind="escalation",
        channel="slack",
        dedup_key="rl",
        subject="Escalation",
        body="",
        workstream=tenant.episode.workstream,
    )
    fake_slack.rate_limit(calls=1, retry_after=42)
    with pytest.raises(RetryLater) as raised:
        slack.send(Notification.objects.select_related("organization", "recipient__user").get(pk=row.pk))
    assert raised.value.seconds == 42


def test_a_batch_reads_each_organizations_bot_token_once_and_the_next_batch_uses_a_rotated_one(
    tenant, stranger_tenant, fake_slack
):
    connect(tenant, fake_slack)
    connect(stranger_tenant, fake_slack, team={"id": "T0GLOBEX", "name": "Globex"})
    with tenancy.scope(organization=stranger_tenant.org.pk):
        secret_set(org=stranger_tenant.org, actor=None, name=BOT_TOKEN, value="xoxb-globex")

    def batch(count: int, prefix: str) -> tuple[int, dict[str, set[str]]]:
        """Delivers `count` Slack messages to each organization's executive in one batch: the secret reads, and the
        tokens each organization's DMs went out with."""
        for t in (tenant, stranger_tenant):
            Notification.objects.bulk_create(
                Notification(
                    organization=t.org,
                    recipient=t.executive,
                    kind="escalation",
                    channel="slack",
                    dedup_key=f"{prefix}{i}:{t.org.pk}",
                    subject=f"Escalation {i}",
                    body="",
                    next_attempt_at=timezone.now(),
                )
                for i in range(count)
            )
        fake_slack.calls.clear()
        with CaptureQueriesContext(connection) as queries:
            deliver_due()
        assert not Notification.objects.filter(dedup_key__startswith=prefix, delivered_at=None).exists()
        reads = sum('"governance_secret"' in q["sql"] for q in queries.captured_queries)
        used: dict[str, set[str]] = {}
        for call in fake_slack.called("conversations.open"):
            used.setdefault(call["users"], set()).add(call["_token"])
        return reads, used

    few, many = batch(2, "few"), batch(20, "many")
    assert few[0] == many[0] == 2  # one read per organization, whatever the batch's size
    assert many[1] == {"UT0ACMEEXEC": {"Bearer xoxb-fake-bot-token"}, "UT0GLOBEXEXEC": {"Bearer xoxb-globex"}}

    with tenancy.scope(organization=tenant.org.pk):
        secret_set(org=tenant.org, actor=tenant.admin.user, name=BOT_TOKEN, value="xoxb-rotated")
    _, used = batch(3, "rotated")
    assert used == {"UT0ACMEEXEC": {"Bearer xoxb-rotated"}, "UT0GLOBEXEXEC": {"Bearer xoxb-globex"}}


def test_a_slack_user_of_one_organization_cannot_act_on_anothers_task(tenant, stranger_tenant, fake_slack, eager):
    connect(tenant, fake_slack)
    connect(stranger_tenant, fake_slack, team={"id": "T0GLOBEX", "name": "Globex"})
    _announce(stranger_tenant, [stranger_tenant.executive])
    theirs = _message(stranger_tenant, stranger_tenant.executive)
    # Acme's executive, in Acme's workspace, names Globex's message.
    for payload in (
        click("T0ACME", "UT0ACMEEXEC", "acknowledge", theirs.pk),
        submission("T0ACME", "UT0ACMEEXEC", "approve", theirs.pk, "Sure"),
    ):
        response = signed(INTERACTIVITY, payload_body(payload))
        assert response.status_code == 200 and "not" in response.content.decode().lower()
    # ... or claims to be in Globex's workspace: Globex's linked users are not Acme's.
    response = signed(INTERACTIVITY, payload_body(click("T0GLOBEX", "UT0ACMEEXEC", "acknowledge", theirs.pk)))
    assert "not linked" in response.content.decode()
    assert Task.objects.get(pk=stranger_tenant.episode.task.pk).state == Task.State.OPEN
    assert MitigationPath.objects.get(pk=stranger_tenant.episode.path.pk).state == MitigationPath.State.SUBMITTED


def test_a_member_links_with_a_code_once_and_unlinks(tenant, fake_slack):
    installation = connect(tenant, fake_slack)
    code = slack_services.link_code(tenant.member)
    body = f"team_id=T0ACME&user_id=UMEMBER&command=%2Fsteerco&text=link+{code}"
    answer = signed("/slack/commands/", body).json()
    assert answer["response_type"] == "ephemeral" and answer["text"].startswith("Linked")
    assert SlackLink.objects.get(membership=tenant.member).user_id == "UMEMBER"
    again = signed("/slack/commands/", body.replace("UMEMBER", "UOTHER")).json()
    assert "used already" in again["text"]
    client = tenant.client(tenant.member)
    client.post(reverse("escalations:slack_account", args=[tenant.org.slug]))
    assert not SlackLink.objects.filter(membership=tenant.member).exists()
    assert installation.team_id == "T0ACME"


def test_the_admin_pages_and_the_stranger(tenant, stranger_tenant, fake_slack):
    connect(tenant, fake_slack)
    page = tenant.client(tenant.admin).get(reverse("escalations:slack_settings", args=[tenant.org.slug]))
    assert page.status_code == 200 and b"Acme Slack" in page.content and b"Not linked" in page.content
    assert (
        tenant.client(tenant.member).get(reverse("escalations:slack_settings", args=[tenant.org.slug])).status_code
        == 403
    )
    stranger = stranger_tenant.client(stranger_tenant.admin)
    assert stranger.get(reverse("escalations:slack_settings", args=[tenant.org.slug])).status_code == 404
    sent = tenant.client(tenant.admin).post(reverse("escalations:slack_test", args=[tenant.org.slug]))
    assert sent.status_code == 302 and fake_slack.called("chat.postMessage")[-1]["channel"] == "DUT0ACMEADMIN"
    assert AuditEvent.objects.filter(organization=tenant.org, verb="slack.tested").exists()


def test_connecting_checks_the_oauth_state(tenant, fake_slack):
    client = tenant.client(tenant.admin)
    start = client.get(reverse("escalations:slack_connect", args=[tenant.org.slug]))
    assert start.url.startswith(fake_slack.url + "/oauth/v2/authorize?")
    callback = reverse("escalations:slack_callback", args=[tenant.org.slug])
    forged = client.get(callback, {"code": "good-code", "state": "forged"}, follow=True)
    assert b"does not match" in forged.content and not fake_slack.called("oauth.v2.access")


def test_a_dependency_review_is_answered_from_slack(tenant, fake_slack, eager, django_capture_on_commit_callbacks):
    connect(tenant, fake_slack)
    now = timezone.now()
    upstream = KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.member, key="ops.backlog")
    signal = DependencySignal.objects.create(organization=tenant.org, kpi=upstream, kind="status", at=now, cause="Off")
    task = Task.objects.create(
        organization=tenant.org,
        kind=Task.Kind.DEPENDENCY_REVIEW,
        assignee=tenant.lead,
        kpi=tenant.kpi,
        due_at=now + timedelta(days=1),
        dedup_key="acme:review",
    )
    review = DependencyReview.objects.create(
        organization=tenant.org, kpi=tenant.kpi, task=task, opened_at=now, due_at=now + timedelta(days=1)
    )
    DependencyReviewSignal.objects.create(
        organization=tenant.org, signal=signal, review=review, kpi=tenant.kpi, upstream=upstream, at=now
    )
    notify(
        recipients=[tenant.lead],
        message=Message(kind=Task.Kind.DEPENDENCY_REVIEW, subject="Review Throughput", body="Backlog is off"),
        dedup_key="review",
    )
    deliver_due()
    message = _message(tenant, tenant.lead)
    assert (message.task_id, message.review_id) == (task.pk, review.pk)
    assert "answer" in _buttons(fake_slack.called("chat.postMessage")[-1]["blocks"])
    signed(INTERACTIVITY, payload_body(click("T0ACME", "UT0ACMELEAD", "answer", message.pk)))
    assert fake_slack.called("views.open")[-1]["view"]["title"]["text"] == "Answer review"
    answer = submission("T0ACME", "UT0ACMELEAD", "answer", message.pk, "Separate queue", impact="no_impact")
    with django_capture_on_commit_callbacks(execute=True):
        signed(INTERACTIVITY, payload_body(answer))
    review.refresh_from_db()
    assert review.answer == DependencyReview.Answer.NO_IMPACT and review.answer_reason == "Separate queue"
    assert Decision.objects.filter(organization=tenant.org, kind=Decision.Kind.REVIEW_NO_IMPACT).exists()
    assert "no impact: Separate queue" in str(fake_slack.called("chat.update")[-1]["blocks"])


def test_a_payload_that_is_not_slacks_is_refused_with_a_reason(tenant, fake_slack):
    connect(tenant, fake_slack)
    for body in ("payload=not-json", "nothing=here", payload_body({"type": "block_actions", "team": {"id": "T0ACME"}})):
        response = signed(INTERACTIVITY, body)
        assert response.status_code == 400 and b"not a Slack interactivity payload" in response.content
    unknown = signed(INTERACTIVITY, payload_body(click("T0NOBODY", "U1", "acknowledge", 1)))
    assert unknown.status_code == 403 and b"not connected" in unknown.content

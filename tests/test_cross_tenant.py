"""Every URL, walked from the URL resolver, as a member of another organization: 404 everywhere.

New views are covered automatically; a view with a new kind of object id fails the completeness test
until OBJECT_KWARGS says how to find such an object in an organization.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from dependencies.models import Dependency, SuggestedDependency
from escalations.collaboration.models import Attachment, Comment, ShareLink
from escalations.models import (
    Decision,
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    EscalationLevel,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    NotificationPreference,
    ReportSend,
    ReportSubscription,
    ReviewAttendee,
    ReviewSession,
    Task,
    Webhook,
    WebhookDelivery,
    Workstream,
    WorkstreamEvent,
)
from governance import tenancy
from governance.models import AuditEvent, Invitation, Membership, Secret, Team
from governance.services.members import membership_set_active
from scorecards.models import (
    CheckIn,
    ImportJob,
    KeyResult,
    Kpi,
    ManualKpi,
    ManualValue,
    Measurement,
    Objective,
    OwnershipTransfer,
)
from tests.conftest import Tenant

# kwarg name -> the object of that kind in a tenant
OBJECT_KWARGS: dict[str, Callable[[Tenant], object]] = {
    "team_id": lambda t: t.team.pk,
    "membership_id": lambda t: t.member.pk,
    "invitation_id": lambda t: t.invitation.pk,
    "kpi_id": lambda t: t.kpi.pk,
    "scorecard_id": lambda t: t.scorecard.pk,
    "transfer_id": lambda t: t.transfer.pk,
    "objective_id": lambda t: t.objective.pk,
    "key_result_id": lambda t: t.key_result.pk,
    "source_id": lambda t: t.data_source.pk,
    "job_id": lambda t: t.import_job.pk,
    "token_id": lambda t: t.api_token.pk,
    "workstream_id": lambda t: t.episode.workstream.pk,
    "path_id": lambda t: t.episode.path.pk,
    "action_id": lambda t: t.episode.action.pk,
    "task_id": lambda t: t.episode.task.pk,
    "notification_id": lambda t: t.episode.notification.pk,
    "policy_id": lambda t: t.policy.pk,
    "webhook_id": lambda t: t.webhook.pk,
    "dependency_id": lambda t: t.dependency.pk,
    "suggestion_id": lambda t: t.suggestion.pk,
    "session_id": lambda t: t.review_session.pk,
    # collaboration: a target's kind and id, and the rows hung on it (made on first use)
    "target": lambda t: "kpi",
    "object_id": lambda t: t.kpi.pk,
    "comment_id": lambda t: collaboration_rows(t)["comment"].pk,
    "attachment_id": lambda t: collaboration_rows(t)["attachment"].pk,
    "link_id": lambda t: collaboration_rows(t)["link"].pk,
    "decision_id": lambda t: t.review_session.decisions.first().pk,
    "fmt": lambda t: "pptx",  # the steering pack's format
    "subscription_id": lambda t: t.report_subscription.pk,
    "value_id": lambda t: t.manual_value.pk,
    "name": lambda t: t.secret.name,  # a secret's, in its organization's own namespace
}

# Views outside /o/<slug>/, with the reason they need no tenant check.
PUBLIC = {
    "login": "authentication",
    "logout": "authentication",
    "password_reset": "authentication",
    "password_reset_done": "authentication",
    "password_reset_confirm": "authentication (signed token)",
    "password_reset_complete": "authentication",
    "governance:home": "lists the user's own memberships",
    "governance:healthz": "no tenant data",
    "governance:organization_create": "creates a new organization",
    "governance:invitation_accept": "secret token bound to one organization",
    "governance:invitation_join": "the invitation whose link the visitor opened (its token in the session)",
    "identity:signup": "creates an account, no organization's rows",
    "identity:signup_verify": "authentication (signed link naming one account)",
    "identity:scim_users": "bearer-token tenancy: the scim token's organization (tests/identity/test_scim.py)",
    "identity:scim_user": "bearer-token tenancy: the scim token's organization (tests/identity/test_scim.py)",
    "identity:scim_groups": "bearer-token tenancy: the scim token's organization (tests/identity/test_scim.py)",
    "identity:scim_group": "bearer-token tenancy: the scim token's organization (tests/identity/test_scim.py)",
    "identity:login_verify": "authentication (the session's own half-done login)",
    "identity:two_factor": "the signed-in user's own second factor",
    "identity:start": "authentication (the organization whose single sign-on covers the email's domain)",
    "identity:callback": "authentication (the organization this session's sign-in state belongs to)",
    "slack_interactivity": "Slack-signed; the workspace names the organization (tests/escalations/slack, cross-tenant)",
    "slack_command": "Slack-signed; the workspace names the organization (tests/escalations/slack)",
    "readyz": "no tenant data",
    "demo:mailbox": "development only, with DEBUG on: the embedded default's emails (tests/demo/test_mailbox.py)",
    "demo:mail_message": "development only, with DEBUG on (tests/demo/test_mailbox.py)",
    "demo:mail_html": "development only, with DEBUG on (tests/demo/test_mailbox.py)",
    "metrics": "aggregate counts behind METRICS_TOKEN (tests/operations/test_metrics.py)",
    "share": "secret token bound to one scorecard of one organization (tests/escalations/collaboration)",
    "share_tv": "secret token bound to one scorecard of one organization (tests/escalations/collaboration)",
}


def collaboration_rows(t: Tenant) -> dict:
    """A comment, an attachment and a share link of the tenant's, made once per tenant."""
    if not hasattr(t, "_collaboration"):
        from django.core.files.uploadedfile import SimpleUploadedFile

        from escalations.collaboration import attachments, comments, sharing

        with tenancy.scope(organization=t.org.pk):
            link, _ = sharing.share_link_create(
                by=t.executive, scorecard=t.scorecard, label="Board", valid_for=timedelta(days=7)
            )
            t._collaboration = {
                "comment": comments.comment_create(author=t.admin, target=t.kpi, body="Looks late"),
                "attachment": attachments.attachment_add(
                    by=t.member, target=t.kpi, upload=SimpleUploadedFile("notes.txt", b"evidence")
                ),
                "link": link,
            }
    return t._collaboration


def walk(patterns=None, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    """Every route with the name that reverses it, its namespace included ("governance:team_list")."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, prefix + str(entry.pattern), inner)
        else:
            yield prefix + str(entry.pattern), f"{namespace}{entry.name}"


def org_patterns() -> list[tuple[str, str]]:
    return [(route, name) for route, name in walk() if "<slug:org_slug>" in route]


def route_kwargs(route: str) -> set[str]:
    return set(re.findall(r"<(?:\w+:)?(\w+)>", route)) - {"org_slug"}


def tenant_rows(t: Tenant) -> list:
    """Everything of a tenant that a stranger's request could try to change."""
    # Made before the first snapshot, not by the URLs.
    assert t.episode and t.dependency and t.review_session and t.report_subscription and t.manual_value and t.suggestion
    collaboration_rows(t)
    return [
        list(Team.objects.filter(organization=t.org).values().order_by("pk")),
        list(Membership.objects.filter(organization=t.org).values().order_by("pk")),
        list(Invitation.objects.filter(organization=t.org).values().order_by("pk")),
        list(t.org.__class__.objects.filter(pk=t.org.pk).values()),
        list(Kpi.objects.filter(organization=t.org).values().order_by("pk")),
        list(SuggestedDependency.objects.filter(organization=t.org).values().order_by("pk")),
        list(OwnershipTransfer.objects.filter(organization=t.org).values().order_by("pk")),
        list(KeyResult.objects.filter(organization=t.org).values().order_by("pk")),
        list(CheckIn.objects.filter(organization=t.org).values().order_by("pk")),
        list(Objective.objects.filter(organization=t.org).values().order_by("pk")),
        list(ImportJob.objects.filter(organization=t.org).values().order_by("pk")),
        list(Measurement.objects.filter(organization=t.org).values().order_by("pk")),
        list(EscalationPolicy.objects.filter(organization=t.org).values().order_by("pk")),
        list(EscalationLevel.objects.filter(organization=t.org).values().order_by("pk")),
        list(Webhook.objects.filter(organization=t.org).values().order_by("pk")),
        list(WebhookDelivery.objects.filter(organization=t.org).values().order_by("pk")),
        secret_rows(t),
        *(
            list(model.objects.filter(organization=t.org).values().order_by("pk"))
            for model in (
                Dependency,
                DependencySignal,
                DependencyReview,
                DependencyReviewSignal,
                Workstream,
                MitigationPath,
                MitigationAction,
                Task,
                WorkstreamEvent,
                Notification,
                NotificationPreference,
                ReviewSession,
                ReviewAttendee,
                Decision,
                Comment,
                Attachment,
                ShareLink,
                ReportSubscription,
                ReportSend,
                ManualKpi,
                ManualValue,
            )
        ),
    ]


def secret_rows(t: Tenant) -> list[dict]:
    t.secret  # noqa: B018  (made before the first snapshot, so that both hold it)
    with tenancy.scope(organization=t.org.pk):  # the only scope that sees them
        return list(Secret.objects.filter(organization=t.org).values().order_by("pk"))


def test_every_url_pattern_is_covered():
    uncovered = []
    for route, name in walk():
        if "<slug:org_slug>" in route:
            missing = route_kwargs(route) - set(OBJECT_KWARGS)
            if missing:
                uncovered.append(f"{route}: no OBJECT_KWARGS entry for {sorted(missing)}")
        elif route.lstrip("^").startswith("api/v1/"):
            continue  # bearer-token tenancy: tests/test_api_cross_tenant.py covers every API operation
        elif name not in PUBLIC:
            uncovered.append(f"{route} ({name}): neither under /o/<org_slug>/ nor listed in PUBLIC")
    assert not uncovered, "\n".join(uncovered)


def _object_kwargs(route: str, t: Tenant) -> dict:
    return {name: OBJECT_KWARGS[name](t) for name in route_kwargs(route)}


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_stranger_gets_404_on_every_organization_url(tenant, stranger_tenant, method):
    """An admin of another organization (the strongest stranger) requests tenant A's URLs with A's ids."""
    before = tenant_rows(tenant)
    client = stranger_tenant.client(stranger_tenant.admin)
    checked = 0
    for route, name in org_patterns():
        url = reverse(name, kwargs={"org_slug": tenant.org.slug, **_object_kwargs(route, tenant)})
        response = getattr(client, method)(url, {"role": "admin", "name": "Hijacked", "members": []})
        assert response.status_code == 404, f"{method.upper()} {url} answered {response.status_code}"
        checked += 1
    assert checked == len(org_patterns()) >= 9
    assert tenant_rows(tenant) == before
    denied = AuditEvent.objects.filter(organization=tenant.org, verb="security.access_denied")
    # Counted, not one row each: repeats within a minute are one entry with their count.
    assert sum(e.times for e in denied) == checked and {e.actor_id for e in denied} == {stranger_tenant.admin.user_id}


@pytest.mark.parametrize("method", ["get", "post"])
def test_foreign_ids_in_own_organization_urls_get_404(tenant, stranger_tenant, method):
    """A member of B uses B's own URLs but with A's object ids: still 404, nothing changes."""
    before = tenant_rows(tenant)
    client = stranger_tenant.client(stranger_tenant.admin)
    # A secret is named, not numbered, in each organization's own namespace: no name points into another one.
    routes = [(r, n) for r, n in org_patterns() if _object_kwargs(r, tenant) and "name" not in route_kwargs(r)]
    assert routes, "expected views with object ids"
    refused = 0
    for route, name in routes:
        url = reverse(name, kwargs={"org_slug": stranger_tenant.org.slug, **_object_kwargs(route, tenant)})
        response = getattr(client, method)(url, {"role": "admin", "name": "Hijacked", "members": []})
        if response.status_code == 405:
            # A POST-only view refuses GET before any lookup: then it must do so for its own ids too.
            own = reverse(
                name,
                kwargs={"org_slug": stranger_tenant.org.slug, **_object_kwargs(route, stranger_tenant)},
            )
            assert getattr(client, method)(own).status_code == 405, url
            continue
        assert response.status_code == 404, f"{method.upper()} {url} answered {response.status_code}"
        refused += 1
    assert tenant_rows(tenant) == before
    foreign = AuditEvent.objects.filter(organization=stranger_tenant.org, verb="security.foreign_id")
    assert sum(e.times for e in foreign) == refused > 0


def test_anonymous_visitors_are_sent_to_login(tenant):
    for route, name in org_patterns():
        url = reverse(name, kwargs={"org_slug": tenant.org.slug, **_object_kwargs(route, tenant)})
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_unknown_organization_is_404_and_not_audited(tenant):
    client = tenant.client(tenant.member)
    assert client.get("/o/no-such-org/").status_code == 404
    assert not AuditEvent.objects.filter(verb="security.access_denied").exists()


def test_a_deactivated_member_loses_access(tenant):
    client = tenant.client(tenant.member)
    assert client.get(f"/o/{tenant.org.slug}/").status_code == 200
    membership_set_active(membership=tenant.member, actor=tenant.admin.user, active=False)
    assert client.get(f"/o/{tenant.org.slug}/").status_code == 404

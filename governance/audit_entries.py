"""How the audit log reads: each event as a sentence, its object linked, its changes as fields before and after.

Apps name their objects by model label (AuditEvent.object_type); the links below are URL names and field paths,
resolved with one query per kind of object on a page, so that governance imports none of the apps above it."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.apps import apps
from django.urls import NoReverseMatch, reverse

from governance.models import AuditEvent, Organization

# Every verb's namespace, as the Kind filter offers it: what an admin looks for, in the words of the pages.
KINDS: dict[str, str] = {
    "organization.": "Organization settings",
    "team.": "Teams",
    "member.": "Members and roles",
    "invitation.": "Invitations",
    "security.": "Sign-ins and security",
    "identity.": "Single sign-on and provisioning",
    "secret.": "Secrets",
    "api_token.": "API tokens",
    "manifest.": "Configuration as code",
    "kpi.": "KPIs and owners",
    "objective.": "Objectives",
    "key_result.": "Key results",
    "data_source.": "Data sources",
    "measurement_import.": "CSV imports",
    "dependency.": "Dependencies",
    "suggestion.": "Suggested dependencies",
    "dependency_review.": "Dependency reviews",
    "workstream.": "Workstreams",
    "mitigation_path.": "Mitigation paths",
    "mitigation_action.": "Mitigation actions",
    "task.": "Tasks",
    "escalation_policy.": "Escalation policies",
    "review_session.": "Review sessions",
    "decision.": "Decisions",
    "webhook.": "Webhooks",
    "notification_preferences.": "Notification settings",
    "slack.": "Slack",
    "teams.": "Microsoft Teams",
    "report_subscription.": "Scheduled reports",
    "comment.": "Comments",
    "attachment.": "Attachments",
    "share_link.": "Share links",
    "manual_value.": "Manual values",
}

# Verbs whose generic reading ("Mitigation path … approved") says less than a sentence of their own.
SENTENCES: dict[str, str] = {
    "organization.created": "created the organization",
    "organization.updated": "changed the organization's settings",
    "team.created": "created the team {object}",
    "team.updated": "changed the team {object}",
    "team.members_changed": "changed who is in the team {object}",
    "member.invited": "invited {object}",
    "member.role_changed": "changed the role of {object}",
    "member.deactivated": "deactivated {object}",
    "member.reactivated": "reactivated {object}",
    "invitation.accepted": "accepted the invitation {object}",
    "invitation.revoked": "revoked the invitation {object}",
    "kpi.created": "created the KPI {object}",
    "kpi.updated": "changed the KPI {object}",
    "kpi.owner_changed": "changed the owner of {object}",
    "kpi.transfer_requested": "asked to transfer {object} to a new owner",
    "kpi.transfer_rejected": "rejected the transfer of {object}",
    "kpi.transfer_cancelled": "cancelled the transfer of {object}",
    "mitigation_path.filed": "filed the {object}",
    "mitigation_path.approved": "approved the {object}",
    "mitigation_path.rejected": "rejected the {object}",
    "mitigation_action.updated": "updated the action {object}",
    "mitigation_action.assigned": "assigned the action {object}",
    "task.acknowledged": "acknowledged the {object}",
    "workstream.closed": "closed the {object}",
    "dependency_review.answered": "answered the {object}",
    "dependency.created": "declared the dependency {object}",
    "dependency.deleted": "removed the dependency {object}",
    "suggestion.confirmed": "confirmed the suggested dependency {object}",
    "suggestion.dismissed": "dismissed the suggested dependency {object}",
    "escalation_policy.created": "created the escalation policy {object}",
    "escalation_policy.updated": "changed the escalation policy {object}",
    "review_session.started": "started {object}",
    "review_session.closed": "closed {object}",
    "manifest.applied": "applied a configuration manifest",
    "secret.replaced": "replaced the secret {object}",
    "secret.deleted": "deleted the secret {object}",
    "api_token.created": "created the API token {object}",
    "api_token.revoked": "revoked the API token {object}",
    "decision.path_approved": "decided: approved the mitigation path for {object}",
    "decision.path_rejected": "decided: rejected the mitigation path for {object}",
    "decision.workstream_closed": "decided: closed the workstream of {object}",
    "decision.risk_accepted": "decided: accepted the risk on {object}",
    "decision.target_changed": "decided: changed the target of {object}",
    "decision.transfer_decided": "decided the ownership transfer of {object}",
    "decision.transfer_requested": "decided: asked for an ownership transfer of {object}",
    "decision.review_no_impact": "decided: no impact from {object}",
    "decision.action_assigned": "decided: assigned an action on {object}",
    "decision.value_confirmed": "decided: confirmed a manual value of {object}",
    "decision.value_rejected": "decided: rejected a manual value of {object}",
    "comment.created": "commented on {object}",
    "comment.edited": "edited a comment on {object}",
    "comment.deleted": "deleted a comment on {object}",
    "attachment.added": "attached {object}",
    "attachment.deleted": "deleted the attachment {object}",
    "share_link.created": "created the share link {object}",
    "share_link.revoked": "revoked the share link {object}",
    "manual_value.confirmed": "confirmed {object}",
    "manual_value.rejected": "rejected {object}",
    "manual_value.corrected": "corrected {object}",
    "manual_value.tasks_cancelled": "cancelled the manual-value tasks of {object}, no longer kept by hand",
    "slack.connected": "connected Slack",
    "slack.disconnected": "disconnected Slack",
    "teams.connected": "connected Microsoft Teams",
    "teams.disconnected": "disconnected Microsoft Teams",
    "security.login": "signed in",
    "security.login_failed": "failed to sign in",
}

# Fields whose name does not read as a label once its underscores are spaces.
FIELD_LABELS = {"ip": "IP address", "user_agent": "Browser", "kpi": "KPI", "url": "URL"}

# Model label -> (URL name, its id argument, the field of the object that gives that id).
LINKS: dict[str, tuple[str, str, str]] = {
    "scorecards.kpi": ("scorecards:kpi_detail", "kpi_id", "pk"),
    "scorecards.datasource": ("scorecards:data_source", "source_id", "pk"),
    "governance.team": ("governance:team_detail", "team_id", "pk"),
    "escalations.workstream": ("escalations:workstream_detail", "workstream_id", "pk"),
    "escalations.mitigationpath": ("escalations:workstream_detail", "workstream_id", "workstream_id"),
    "escalations.mitigationaction": ("escalations:workstream_detail", "workstream_id", "path__workstream_id"),
    "escalations.task": ("escalations:workstream_detail", "workstream_id", "workstream_id"),
    "escalations.decision": ("escalations:workstream_detail", "workstream_id", "workstream_id"),
    "escalations.reviewsession": ("escalations:review_session_detail", "session_id", "pk"),
    "escalations.escalationpolicy": ("escalations:policy_edit", "policy_id", "pk"),
    "escalations.webhook": ("escalations:webhook_detail", "webhook_id", "pk"),
    "dependencies.dependency": ("dependencies:dependency_neighbourhood", "kpi_id", "downstream_id"),
}


@dataclass(frozen=True)
class Entry:
    event: AuditEvent
    before_object: str  # the sentence up to the object ("Ada Admin changed the role of")
    after_object: str  # and after it
    object_label: str
    object_url: str
    changes: list[tuple[str, str, str]]  # field, before, after, each in words

    @property
    def kind(self) -> str:
        return next((label for prefix, label in KINDS.items() if self.event.verb.startswith(prefix)), "")


def entries(events: list[AuditEvent], *, org: Organization) -> list[Entry]:
    urls = _urls(events, org)
    return [_entry(e, urls.get((e.object_type, e.object_id), "")) for e in events]


def object_filter_label(org: Organization, object_type: str, object_id: str) -> str:
    """What the "events of one object" filter shows: the object's latest name in the log."""
    event = AuditEvent.objects.for_org(org).filter(object_type=object_type, object_id=object_id).first()
    return event.object_repr if event else f"{object_type} {object_id}"


def _entry(event: AuditEvent, url: str) -> Entry:
    actor = event.actor.name if event.actor else "Steerco"
    noun, _, action = event.verb.partition(".")
    # Unlisted verbs read "Ada Admin · data source failing: Warehouse orders".
    phrase = SENTENCES.get(event.verb) or f"· {noun.replace('_', ' ')} {action.replace('_', ' ')}: {{object}}"
    if "{object}" not in phrase and event.object_repr and not event.verb.startswith("security."):
        phrase += " ({object})"
    head, _, tail = phrase.partition("{object}")
    return Entry(
        event=event,
        before_object=f"{actor} {head}".rstrip(),
        after_object=tail,
        object_label=event.object_repr if "{object}" in phrase else "",
        object_url=url,
        changes=[(_label(field), _words(old), _words(new)) for field, old, new in event.changes],
    )


def _label(field: str) -> str:
    return FIELD_LABELS.get(field) or field.replace("_", " ").capitalize()


def _words(value: object) -> str:
    """A JSON value as a person reads it: no braces, quotes or None."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_words(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_words(v) for v in value)
    return str(value)


def _urls(events: list[AuditEvent], org: Organization) -> dict[tuple[str, str], str]:
    ids: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.object_type in LINKS and e.object_id.isdigit():
            ids[e.object_type].add(e.object_id)
    urls = {}
    for label, object_ids in ids.items():
        name, argument, field = LINKS[label]
        model = apps.get_model(label)
        for pk, target in model.objects.filter(organization=org, pk__in=object_ids).values_list("pk", field):
            if target is None:
                continue
            try:
                urls[(label, str(pk))] = reverse(name, kwargs={"org_slug": org.slug, argument: target})
            except NoReverseMatch:  # an app whose pages are not installed
                continue
    return urls

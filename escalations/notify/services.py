"""What a member does with notifications (mark read, switch kinds off per channel) and what an admin does with
webhooks (create, edit, rotate the secret, send a test)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.models import (
    Notification,
    NotificationPreference,
    Task,
    Webhook,
    WebhookDelivery,
)
from escalations.notify import webhooks
from governance.models import Membership, Organization, User
from governance.services.audit import audit_log, snapshot

# Every kind a notification may have, as a member switches them on and off (NotificationPreference.kind).
NOTIFICATION_KINDS: dict[str, str] = {
    Task.Kind.MITIGATION: "A KPI you own needs a mitigation path",
    Task.Kind.DATA_FRESHNESS: "A KPI you own has no fresh data",
    Task.Kind.ESCALATION: "An episode is escalated to you",
    Task.Kind.DEPENDENCY_REVIEW: "An upstream KPI changed: review the impact",
    Task.Kind.ACTION: "An action you own is overdue",
    Task.Kind.OWNERSHIP_TRANSFER: "A leaver's KPI waits for someone to accept ownership",
    Task.Kind.MANUAL_ENTRY: "A manual KPI's period has ended: enter its value",
    Task.Kind.MANUAL_APPROVAL: "A manual value waits for your confirmation",
    "path_filed": "A mitigation path awaits review",
    "path_approved": "Your mitigation path was approved",
    "path_rejected": "Your mitigation path was rejected",
    "resolved": "An episode you were told about ended",
    "exhausted": "Escalation exhausted (admins)",
    "weekly_digest": "Weekly digest, Mondays 08:00: the scorecard's week (executives) and your open items",
}


def notification_mark_read(*, membership: Membership, notification: Notification | None = None) -> int:
    """One notification, or every unread one of the member; not audited: it changes only what the member sees."""
    unread = Notification.objects.filter(recipient=membership, read_at=None)
    if notification is not None:
        if notification.recipient_id != membership.pk:
            raise PermissionDenied("Only the recipient marks a notification read.")
        unread = unread.filter(pk=notification.pk)
    return unread.update(read_at=timezone.now())


@transaction.atomic
def notification_preferences_set(*, membership: Membership, off: set[tuple[str, str]]) -> None:
    """Every kind on every channel, on unless (kind, channel) is in `off`. Audited: whether someone could have
    heard of an escalation is part of the record."""
    unknown = {kind for kind, _ in off} - set(NOTIFICATION_KINDS)
    unknown |= {channel for _, channel in off} - set(Notification.Channel.values)
    if unknown:
        raise ValidationError(f"Unknown notification kind or channel: {', '.join(sorted(unknown))}.")
    before = sorted(
        f"{kind}/{channel}"
        for kind, channel in NotificationPreference.objects.filter(membership=membership, enabled=False).values_list(
            "kind", "channel"
        )
    )
    NotificationPreference.objects.bulk_create(
        [
            NotificationPreference(
                organization_id=membership.organization_id,
                membership=membership,
                kind=kind,
                channel=channel,
                enabled=(kind, channel) not in off,
            )
            for kind in NOTIFICATION_KINDS
            for channel in Notification.Channel.values
        ],
        update_conflicts=True,
        unique_fields=["membership", "kind", "channel"],
        update_fields=["enabled"],
    )
    after = sorted(f"{kind}/{channel}" for kind, channel in off)
    if before != after:
        audit_log(
            org=membership.organization,
            actor=membership.user,
            verb="notification_preferences.updated",
            obj=membership,
            before={"off": before},
            after={"off": after},
        )


WEBHOOK_FIELDS = ["name", "url", "slack_format", "is_active"]


@transaction.atomic
def webhook_create(*, org: Organization, actor: User, name: str, url: str, slack_format: bool = False) -> Webhook:
    webhook = Webhook(organization=org, name=name.strip(), url=url.strip(), slack_format=slack_format, created_by=actor)
    webhook.full_clean()
    webhook.save()
    audit_log(org=org, actor=actor, verb="webhook.created", obj=webhook, after=snapshot(webhook, WEBHOOK_FIELDS))
    return webhook


@transaction.atomic
def webhook_update(
    *, webhook: Webhook, actor: User, name: str, url: str, slack_format: bool, is_active: bool
) -> Webhook:
    webhook = Webhook.objects.select_for_update().select_related("organization").get(pk=webhook.pk)
    before = snapshot(webhook, WEBHOOK_FIELDS)
    webhook.name, webhook.url = name.strip(), url.strip()
    webhook.slack_format, webhook.is_active = slack_format, is_active
    webhook.full_clean()
    webhook.save(update_fields=WEBHOOK_FIELDS)
    after = snapshot(webhook, WEBHOOK_FIELDS)
    if after != before:
        audit_log(
            org=webhook.organization, actor=actor, verb="webhook.updated", obj=webhook, before=before, after=after
        )
    return webhook


@transaction.atomic
def webhook_rotate_secret(*, webhook: Webhook, actor: User) -> Webhook:
    """A new signing secret at once; the old one stops verifying with the next post."""
    webhook = Webhook.objects.select_for_update().select_related("organization").get(pk=webhook.pk)
    webhook.secret_version += 1
    webhook.save(update_fields=["secret_version"])
    audit_log(
        org=webhook.organization,
        actor=actor,
        verb="webhook.secret_rotated",
        obj=webhook,
        after={"secret_version": webhook.secret_version},
    )
    return webhook


@transaction.atomic
def webhook_send_test(*, webhook: Webhook, actor: User) -> WebhookDelivery:
    """A ping delivery, due at once; the caller may post it right after the commit (webhooks.deliver_now)."""
    if not webhook.is_active:
        raise ValidationError("This webhook is deactivated; activate it to send a test event.")
    delivery = webhooks.ping(webhook, actor.name or actor.email)
    audit_log(org=webhook.organization, actor=actor, verb="webhook.test_sent", obj=webhook)
    return delivery

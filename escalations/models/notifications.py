"""Notifications, their preferences, webhooks and webhook deliveries."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.db.models import Q
from django.utils.timezone import now

from escalations.models.workstreams import Workstream
from governance.models import (
    Membership,
    Organization,
    TenantQuerySet,
    User,
    single_line,
    single_line_validator,
)


class Notification(models.Model):
    """One message to one person on one channel; the dedup key makes a retried sweep harmless."""

    class Channel(models.TextChoices):
        IN_APP = "in_app", "In the app"
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30)  # a Task.Kind, or resolved / exhausted / path_reviewed / ...
    channel = models.CharField(max_length=10, choices=Channel.choices)
    dedup_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    url = models.CharField(max_length=300, blank=True)
    # Structured content for messages with a layout of their own (the weekly digest's email), stored when the
    # notification is written so that a retried delivery sends the same message.
    payload = models.JSONField(default=dict, blank=True)
    workstream = models.ForeignKey(
        Workstream, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    created_at = models.DateTimeField(default=now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Held for the member's daily digest (NotificationSettings.digest_kinds): never sent alone; the digest sweep
    # marks it delivered in the transaction that writes the digest which lists it.
    in_digest = models.BooleanField(default=False, db_default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["dedup_key", "channel"], name="notification_once_per_channel")]
        indexes = [
            models.Index(
                fields=["organization", "recipient"],
                condition=Q(in_digest=True, delivered_at__isnull=True),
                name="notification_held_for_digest",
            ),
            models.Index(
                fields=["next_attempt_at"], condition=Q(delivered_at__isnull=True), name="notification_undelivered"
            ),
            models.Index(fields=["recipient", "read_at"], name="notification_unread"),
            models.Index(fields=["created_at"], name="notification_created"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.recipient_id}: {self.subject}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.in_digest:
            return "held"
        if self.next_attempt_at is None:
            return "failed"
        return "retrying" if self.attempts else "pending"

    @property
    def email_subject(self) -> str:
        """The one place an email subject is made: names stored before they had to be one line (a KPI named
        "Sales\r\nBcc: ...") must not make the header, so the email, fail."""
        return single_line(f"[{self.organization}] {self.subject}")


class NotificationPreference(models.Model):
    """A member's opt-out of one kind of notification on one channel (everything is on by default)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    membership = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=30)
    channel = models.CharField(max_length=10, choices=Notification.Channel.choices)
    enabled = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["membership", "kind", "channel"], name="one_preference_per_kind_channel")
        ]

    def __str__(self) -> str:
        return f"{self.membership_id} {self.kind}/{self.channel}: {'on' if self.enabled else 'off'}"


class NotificationSettings(models.Model):
    """When a member hears (which channels: NotificationPreference): quiet hours and the daily digest."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    membership = models.OneToOneField(Membership, on_delete=models.CASCADE, related_name="notification_settings")
    # Non-urgent messages outside the organization's business hours wait for the next opening (in the app at once).
    quiet_hours = models.BooleanField(default=False)
    # Low-severity kinds (escalations.notify.kinds.DIGESTIBLE) sent in one email a day instead of one by one.
    digest_kinds = models.JSONField(default=list, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.membership_id}: quiet hours {'on' if self.quiet_hours else 'off'}, digest {self.digest_kinds}"


class Webhook(models.Model):
    """An endpoint that hears about workstream events (opened, escalated, resolved, ...), signed with its secret.

    The signing secret is never stored: it is an HMAC under settings.WEBHOOK_KEY of the webhook's id and
    `secret_version`, so a leaked database reveals no secret, and rotating is bumping the version.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100, validators=[single_line_validator])
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    slack_format = models.BooleanField(default=False, help_text='Send {"text": ...} for a Slack incoming webhook')
    # A Microsoft Teams incoming webhook or Workflows URL, sent Adaptive Cards (escalations.notify.teams). Its URL is
    # a credential, so it lives in the organization secret teams.SECRET_NAME; `url` keeps only its scheme and host.
    teams = models.BooleanField(default=False, db_default=False)
    is_active = models.BooleanField(default=True)
    secret_version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization"], condition=Q(teams=True), name="one_teams_webhook_per_org")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def secret(self) -> str:
        message = f"webhook:{self.pk}:{self.secret_version}".encode()
        return "whsec_" + hmac.new(settings.WEBHOOK_KEY.encode(), message, hashlib.sha256).hexdigest()

    def sign(self, body: bytes) -> str:
        """The X-Steerco-Signature header's value for `body`, the exact bytes sent."""
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDelivery(models.Model):
    """One event for one webhook, created in the transaction of the event; a sweep posts it, retrying failures."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)  # workstream.opened, workstream.escalated, ..., ping
    payload = models.JSONField()
    # A replayed event or a redelivered sweep never posts twice: one row per webhook and event.
    dedup_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=now)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # None: delivered or given up
    delivered_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # of the last attempt
    error = models.TextField(blank=True)  # of the last attempt
    # Every attempt: {"at": iso, "status": int | null, "error": str, "ms": int}.
    attempt_log = models.JSONField(default=list)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["webhook", "dedup_key"], name="webhook_delivery_once")]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(delivered_at__isnull=True), name="webhook_delivery_due"
            ),
            models.Index(fields=["created_at"], name="webhook_delivery_created"),  # pruning
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook_id}"

    @property
    def state(self) -> str:
        if self.delivered_at:
            return "delivered"
        if self.next_attempt_at is None:
            return "failed"
        return "retrying" if self.attempts else "pending"


# --- executive reviews and the decision log ---------------------------------------------------------------------

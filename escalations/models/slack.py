"""Slack: one workspace per organization, its members' Slack identities, the messages sent and the actions heard.

The bot token and the signing secret are organization secrets (slack_bot_token, slack_signing_secret), never fields.
"""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now

from escalations.models.reviews import DependencyReview
from escalations.models.workstreams import MitigationPath, Task
from governance.models import Membership, Organization, TenantQuerySet, User


class SlackInstallation(models.Model):
    """The Slack workspace an organization connected. A workspace answers to one organization: Slack's requests
    name the team, and the team names the organization (row-level security lets a request that presents the team
    id read this one row, governance.rls)."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="slack")
    team_id = models.CharField(max_length=32, unique=True)
    team_name = models.CharField(max_length=200, blank=True)
    bot_user_id = models.CharField(max_length=32, blank=True)
    installed_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    installed_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.team_name or self.team_id} for {self.organization_id}"


class SlackLink(models.Model):
    """A member's Slack identity in the organization's workspace."""

    class How(models.TextChoices):
        EMAIL = "email", "Matched by email"
        CODE = "code", "Link code"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    membership = models.OneToOneField(Membership, on_delete=models.CASCADE, related_name="slack_link")
    team_id = models.CharField(max_length=32)
    user_id = models.CharField(max_length=32)
    how = models.CharField(max_length=5, choices=How.choices)
    linked_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "team_id", "user_id"], name="slack_user_linked_once")
        ]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.user_id} is {self.membership_id}"


class SlackMessage(models.Model):
    """A direct message sent to a member about a task, a path or a review, kept so that a decision taken anywhere
    updates it (chat.update needs its channel and ts)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    recipient = models.ForeignKey(Membership, on_delete=models.CASCADE, related_name="+")
    task = models.ForeignKey(Task, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    path = models.ForeignKey(MitigationPath, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    review = models.ForeignKey(DependencyReview, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    subject = models.CharField(max_length=200)
    url = models.CharField(max_length=300, blank=True)
    channel = models.CharField(max_length=32)
    ts = models.CharField(max_length=32)
    sent_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["task"], name="slackmessage_task"),
            models.Index(fields=["path"], name="slackmessage_path"),
            models.Index(fields=["review"], name="slackmessage_review"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}/{self.ts}"


class SlackActionReceipt(models.Model):
    """One row per Slack request acted on: Slack resends a request it got no answer to in time (X-Slack-Retry-Num),
    and the unique key makes the second one a no-op."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64, unique=True)
    received_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return self.key

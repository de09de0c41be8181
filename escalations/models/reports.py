"""Scheduled reports: a subscription mails a scorecard or the steering pack on a schedule in the organization's
timezone (escalations.reporting.subscriptions); each send is a row, claimed before anything is sent."""

from __future__ import annotations

from datetime import time

from django.db import models
from django.utils.timezone import now

from governance.models import Membership, Organization, TenantQuerySet, User, single_line_validator
from scorecards.models import Scorecard

# date.weekday(): 0 is Monday
WEEKDAYS = list(enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]))


class ReportSubscription(models.Model):
    class Content(models.TextChoices):
        SCORECARD = "scorecard", "A scorecard"
        PACK = "pack", "The steering pack of the latest review"

    class Format(models.TextChoices):
        PDF = "pdf", "PDF"
        PPTX = "pptx", "PowerPoint"
        XLSX = "xlsx", "Excel"

    class Cadence(models.TextChoices):
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly, on the first working day"
        BEFORE_REVIEW = "before_review", "Before each review session"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200, validators=[single_line_validator])
    content = models.CharField(max_length=10, choices=Content.choices, default=Content.PACK)
    scorecard = models.ForeignKey(Scorecard, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    format = models.CharField(max_length=4, choices=Format.choices, default=Format.PDF)
    cadence = models.CharField(max_length=16, choices=Cadence.choices, default=Cadence.WEEKLY)
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS, default=0)  # for weekly reports
    send_time = models.TimeField(default=time(8))  # local time, for weekly and monthly reports
    hours_before = models.PositiveSmallIntegerField(default=24)  # before each review session
    members = models.ManyToManyField(Membership, blank=True, related_name="+")
    emails = models.JSONField(default=list, blank=True)  # addresses outside the organization
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class ReportSend(models.Model):
    """One period's send of a subscription: inserted before the report is rendered, so that of two beats or a
    redelivered task only the one whose insert succeeds sends it (unique subscription and period)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    subscription = models.ForeignKey(ReportSubscription, on_delete=models.CASCADE, related_name="sends")
    period = models.CharField(max_length=64)  # "2026-W49", "2026-12" or "session-12-20261207T0900"
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(default=now)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-due_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["subscription", "period"], name="one_report_send_per_period")]

    def __str__(self) -> str:
        return f"{self.subscription_id} {self.period}"

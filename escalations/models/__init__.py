"""The escalations app's models, one module per feature; the app's code imports them from here."""

from escalations.models.decisions import Decision, ReviewAttendee, ReviewSession
from escalations.models.notifications import (
    Notification,
    NotificationPreference,
    NotificationSettings,
    Webhook,
    WebhookDelivery,
)
from escalations.models.policies import EscalationLevel, EscalationPolicy
from escalations.models.reports import ReportSend, ReportSubscription
from escalations.models.reviews import DependencyReview, DependencyReviewSignal, DependencySignal
from escalations.models.slack import SlackActionReceipt, SlackInstallation, SlackLink, SlackMessage
from escalations.models.workstreams import MitigationAction, MitigationPath, Task, Workstream, WorkstreamEvent

__all__ = [
    "Decision",
    "DependencyReview",
    "DependencyReviewSignal",
    "DependencySignal",
    "EscalationLevel",
    "EscalationPolicy",
    "MitigationAction",
    "MitigationPath",
    "Notification",
    "NotificationPreference",
    "NotificationSettings",
    "ReportSend",
    "ReportSubscription",
    "ReviewAttendee",
    "ReviewSession",
    "SlackActionReceipt",
    "SlackInstallation",
    "SlackLink",
    "SlackMessage",
    "Task",
    "Webhook",
    "WebhookDelivery",
    "Workstream",
    "WorkstreamEvent",
]

"""Sending a notification as a Slack direct message, and rewriting sent messages once something is decided."""

from __future__ import annotations

from django.db.models import QuerySet

from escalations.models import DependencyReview, MitigationPath, Notification, SlackLink, SlackMessage, Task
from escalations.slack import blocks
from escalations.slack.client import bot, call
from governance import tenancy

OPEN = [Task.State.OPEN, Task.State.ACKNOWLEDGED]


def send(notification: Notification) -> None:
    """The delivery sweep's call (escalations.notify.channels.slack): one DM to the linked member, kept for later
    updates. A member unlinked since the row was written gets nothing (and the row counts as delivered)."""
    # The bot token is an organization secret, readable in the organization's own scope only (not the sweep's).
    with tenancy.scope(organization=notification.organization_id):
        _send(notification)


def _send(notification: Notification) -> None:
    link = SlackLink.objects.filter(membership_id=notification.recipient_id).first()
    if link is None:
        return
    message = _message_about(notification)
    api = bot(notification.organization)
    channel = call(api, "conversations_open", users=link.user_id)["channel"]["id"]
    posted = call(
        api, "chat_postMessage", channel=channel, text=notification.subject, blocks=blocks.message_blocks(message)
    )
    message.channel, message.ts = posted["channel"], posted["ts"]
    message.save()


def _message_about(n: Notification) -> SlackMessage:
    """What the notification asks the member: their open task on its workstream (or their review task), the path
    awaiting review, the review to answer. The message is unsaved until Slack has it."""
    mine = Task.objects.filter(
        organization_id=n.organization_id, assignee_id=n.recipient_id, state__in=OPEN
    ).select_related("kpi__owner__user", "assignee__user")
    task = path = review = None
    if n.workstream_id:
        task = mine.filter(workstream_id=n.workstream_id).order_by("-created_at", "-id").first()
        submitted = MitigationPath.objects.filter(workstream_id=n.workstream_id, state=MitigationPath.State.SUBMITTED)
        path = submitted.select_related("workstream__organization", "workstream__kpi__owner__user").first()
    elif n.kind in (Task.Kind.DEPENDENCY_REVIEW, Task.Kind.ESCALATION):
        task = mine.filter(kind=n.kind, workstream=None).order_by("-created_at", "-id").first()
        if task is not None:
            mine_reviews = DependencyReview.objects.filter(answered_at=None)
            review = (
                mine_reviews.filter(task=task) if task.review_id is None else mine_reviews.filter(pk=task.review_id)
            ).first()
    return SlackMessage(
        organization_id=n.organization_id,
        organization=n.organization,
        recipient=n.recipient,
        task=task,
        path=path,
        review=review,
        subject=n.subject[:200],
        url=n.url,
    )


def with_context(messages: QuerySet[SlackMessage]) -> QuerySet[SlackMessage]:
    return messages.select_related(
        "organization",
        "recipient__user",
        "recipient__organization",
        "task__kpi__owner__user",
        "task__assignee__user",
        "path__workstream__kpi__owner__user",
        "path__reviewed_by",
        "review__kpi__owner__user",
        "review__answered_by",
    )


def refresh(message: SlackMessage) -> None:
    """Rewrites a sent message from the current state: the outcome instead of the buttons once decided."""
    call(
        bot(message.organization),
        "chat_update",
        channel=message.channel,
        ts=message.ts,
        text=message.subject,
        blocks=blocks.message_blocks(message),
    )

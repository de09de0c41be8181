"""Slack: a direct message with buttons to each linked member (docs/slack.md).

The message itself is built by escalations.slack, which sits above the engine (it shows a decision's buttons only
to who may take it): notify may not import it, so it registers its sender here when the app loads
(escalations.apps). Members who have not linked their Slack identity get no Slack rows (`available_to`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from celery import current_app
from django.db import transaction
from django.db.models import Q

from escalations.models import Notification, SlackLink, SlackMessage

NAME = Notification.Channel.SLACK
DELIVERED_WHEN_WRITTEN = False
KEEPS_PAYLOAD = False
REFRESH_TASK = "escalations.slack.tasks.refresh_messages"

_sender: Callable[[Notification], None] | None = None


def register(sender: Callable[[Notification], None]) -> None:
    global _sender
    _sender = sender


def send(notification: Notification) -> None:
    if _sender is None:
        raise RuntimeError("The Slack app is not loaded (escalations.apps registers its sender).")
    _sender(notification)


def available_to(membership_ids: set[int]) -> set[int]:
    return set(SlackLink.objects.filter(membership__in=membership_ids).values_list("membership_id", flat=True))


def refresh_on_commit(
    *, org_id: int, tasks: Iterable[int] = (), paths: Iterable[int] = (), reviews: Iterable[int] = ()
) -> None:
    """After a decision taken anywhere (the web, the API, Slack), the Slack messages about what it decided are
    rewritten to show the outcome and lose their buttons; queued by name, once the decision is committed."""
    about = Q(task__in=tasks) | Q(path__in=paths) | Q(review__in=reviews)
    ids = list(SlackMessage.objects.filter(about, organization_id=org_id).values_list("pk", flat=True))
    if ids:
        transaction.on_commit(lambda: current_app.signature(REFRESH_TASK, args=[org_id, ids]).delay())

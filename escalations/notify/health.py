"""Whether each sending channel of an organization works: email (and the other person channels) and each webhook.

A channel is failing when its messages since the last one delivered failed FAILURES_IN_A_ROW times, or one of them
was given up. The failing period starts with the first of those messages; the organization's admins are told once
per period (the dedup key names its start), and the delivery log shows a banner while it lasts. Nothing is dropped
silently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from escalations.models import Notification, Webhook, WebhookDelivery
from escalations.notify.channels import CHANNELS
from escalations.notify.fanout import Message, notify
from governance.models import Membership, Organization, Role

FAILURES_IN_A_ROW = 5


@dataclass(frozen=True)
class Failing:
    channel: str  # the delivery log's filter value: a channel name, or "webhook:<id>"
    label: str
    since: datetime
    failures: int
    given_up: int
    last_error: str

    @property
    def problem(self) -> str:
        return plain_error(self.last_error)


def sending_channels(org: Organization) -> list[tuple[str, str]]:
    """(filter value, label) of every channel that sends: person channels, then the organization's webhooks."""
    people = [(name, Notification.Channel(name).label) for name, c in CHANNELS.items() if not c.DELIVERED_WHEN_WRITTEN]
    hooks = [(f"webhook:{h.pk}", webhook_label(h)) for h in Webhook.objects.for_org(org).order_by("-teams", "name")]
    return people + hooks


def webhook_label(hook: Webhook) -> str:
    return "Microsoft Teams" if hook.teams else f"Webhook {hook.name}"


def failing_channels(*, org: Organization) -> list[Failing]:
    found = []
    people = Notification.objects.for_org(org).filter(in_digest=False)
    for name, label in sending_channels(org):
        if name.startswith("webhook:"):
            rows = WebhookDelivery.objects.for_org(org).filter(webhook_id=int(name.split(":")[1]))
        else:
            rows = people.filter(channel=name)
        if failing := _streak(rows, name, label):
            found.append(failing)
    return found


def _streak(rows: QuerySet, name: str, label: str) -> Failing | None:
    # Only attempted rows count: a message waiting for quiet hours to end has not failed.
    attempted = rows.filter(attempts__gt=0)
    last_ok = attempted.exclude(delivered_at=None).aggregate(at=Max("created_at"))["at"]
    failed = attempted.filter(delivered_at=None).exclude(error="")
    if last_ok:
        failed = failed.filter(created_at__gt=last_ok)
    streak = failed.aggregate(
        n=Count("id"), since=Min("created_at"), given_up=Count("id", filter=Q(next_attempt_at=None))
    )
    if streak["n"] < FAILURES_IN_A_ROW and not streak["given_up"]:
        return None
    last_error = failed.order_by("-created_at", "-id").values_list("error", flat=True).first()
    return Failing(name, label, streak["since"], streak["n"], streak["given_up"], last_error)


def flag_failing(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Tells the admins of every organization with a failing channel, once per failing period; returns how many
    channels are failing. Looks only at organizations with an undelivered, attempted message."""
    now = now or timezone.now()
    suspects = set(
        Notification.objects.filter(delivered_at=None, attempts__gt=0).values_list("organization_id", flat=True)
    ) | set(WebhookDelivery.objects.filter(delivered_at=None, attempts__gt=0).values_list("organization_id", flat=True))
    if org_id:
        suspects &= {org_id}
    count = 0
    for org in Organization.objects.filter(pk__in=suspects):
        admins = list(Membership.objects.filter(organization=org, role=Role.ADMIN, is_active=True))
        for failing in failing_channels(org=org):
            count += 1
            notify(
                recipients=admins,
                message=Message(
                    kind="channel_failing",
                    subject=f"{failing.label} keeps failing",
                    body=f"{failing.failures} message(s) failed since {failing.since:%Y-%m-%d %H:%M} UTC"
                    f"{f', {failing.given_up} given up' if failing.given_up else ''}: {failing.problem}",
                    url=reverse("escalations:delivery_log", args=[org.slug]) + f"?channel={failing.channel}",
                ),
                dedup_key=f"{org.pk}:channel_failing:{failing.channel}:{failing.since.isoformat()}",
                now=now,
            )
    return count


# The errors the senders record, as an admin reads them (the raw error stays on the row and in the log's tooltip).
_PLAIN = [
    (re.compile(r"^RetryLater"), "The receiver asked us to wait; the next attempt comes after the wait it asked for."),
    (re.compile(r"^HTTP 429"), "The receiver is rate-limiting us (HTTP 429); retried after the wait it asked for."),
    (re.compile(r"^HTTP (5\d\d)"), "The receiver had a server error (HTTP {0}); retried with backoff."),
    (re.compile(r"^HTTP (401|403)"), "The receiver refused our credentials (HTTP {0}): check the address or token."),
    (re.compile(r"^HTTP (404|410)"), "Nothing at that address any more (HTTP {0}): the webhook may have been removed."),
    (re.compile(r"^HTTP (4\d\d)"), "The receiver rejected the message (HTTP {0})."),
    (re.compile(r"^Timed out"), "No answer within the time limit."),
    (re.compile(r"^Refused"), "Not sent: the address is on a private network."),
    (re.compile(r"^(ConnectError|ConnectionRefusedError)"), "Could not connect to the receiver."),
    (re.compile(r"^SMTP\w*"), "The mail server did not accept the message."),
    (re.compile(r"^(gaierror|socket\.gaierror)"), "The address's host name does not resolve."),
]


def plain_error(error: str) -> str:
    for pattern, text in _PLAIN:
        if match := pattern.search(error):
            return text.format(*match.groups())
    return error

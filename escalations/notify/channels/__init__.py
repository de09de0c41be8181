"""The channels a member hears on, one module each (docs/extending-channels.md). A channel module says:

- NAME: its Notification.Channel value (also NotificationPreference.channel);
- DELIVERED_WHEN_WRITTEN: True when writing the row is the delivery (in the app); otherwise the delivery sweep
  (escalations.notify.fanout.deliver_due) calls its send() and retries a failure with backoff;
- KEEPS_PAYLOAD: whether its rows keep a message's payload (what a rich format, like the digest's email, renders);
- send(notification): delivers one row, raising on failure; raising RetryLater when the remote asked to wait;
- optionally available_to(membership_ids) -> set[int]: the members it can reach at all (a Slack DM needs a linked
  account); without it, every member.

escalations.notify.fanout writes one row per registered channel a member has not switched off."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from types import ModuleType

from django.utils import timezone


class RetryLater(Exception):
    """The remote asked us to wait (HTTP 429 or 503 with Retry-After): the next attempt comes no sooner than
    `seconds` from now, and no sooner than the usual backoff either; it still counts as an attempt."""

    def __init__(self, seconds: float, reason: str = ""):
        super().__init__(reason or f"retry in {seconds:g} s")
        self.seconds = seconds
        self.reason = reason


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header's wait in seconds (RFC 9110: a number of seconds or an HTTP date), None when absent or
    unreadable."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        return max((parsedate_to_datetime(header) - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


from escalations.notify.channels import email, in_app, slack  # noqa: E402  (they import RetryLater from here)

CHANNELS: dict[str, ModuleType] = {
    in_app.NAME: in_app,
    email.NAME: email,
    slack.NAME: slack,
}

"""The channels a member hears on, one module each (docs/extending-channels.md). A channel module says:

- NAME: its Notification.Channel value (also NotificationPreference.channel);
- DELIVERED_WHEN_WRITTEN: True when writing the row is the delivery (in the app); otherwise the delivery sweep
  (escalations.notify.fanout.deliver_due) calls its send() and retries a failure with backoff;
- KEEPS_PAYLOAD: whether its rows keep a message's payload (what a rich format, like the digest's email, renders);
- send(notification): delivers one row, raising on failure (RetryLater when the remote side asks to wait);
- available_to(membership_ids) (optional): the members it can reach at all (Slack: those linked); the others get no
  row on it.

escalations.notify.fanout writes one row per registered channel a member has not switched off."""

from __future__ import annotations

from types import ModuleType


class RetryLater(Exception):
    """The remote side is rate limiting us: try this row again after `seconds` (Slack's Retry-After)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {seconds:g} s")
        self.seconds = seconds
        self.reason = reason


from escalations.notify.channels import email, in_app, slack  # noqa: E402  (they import RetryLater from here)

CHANNELS: dict[str, ModuleType] = {
    in_app.NAME: in_app,
    email.NAME: email,
    slack.NAME: slack,
}

"""In the app: the notification list and the unread count in the navigation read the row itself."""

from __future__ import annotations

from escalations.models import Notification

NAME = Notification.Channel.IN_APP
DELIVERED_WHEN_WRITTEN = True
KEEPS_PAYLOAD = False


def send(notification: Notification) -> None:
    """Nothing to send: the row is the delivery."""

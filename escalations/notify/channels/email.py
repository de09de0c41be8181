"""Email: sent by the delivery sweep, as text and HTML; a kind with its own format (the weekly and daily digests)
renders its stored payload (escalations.notify.formats)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from escalations.models import Notification
from escalations.notify import formats

NAME = Notification.Channel.EMAIL
DELIVERED_WHEN_WRITTEN = False
KEEPS_PAYLOAD = True


def send(notification: Notification) -> None:
    text, html = _render(notification)
    email = EmailMultiAlternatives(
        subject=notification.email_subject,
        body=text,
        to=[notification.recipient.user.email],
        # The same message-id on a retry after a crash lets the receiving side drop the copy.
        headers={"Message-ID": message_id(notification)},
    )
    email.attach_alternative(html, "text/html")
    email.send()


def message_id(notification: Notification) -> str:
    digest = hashlib.sha256(f"{notification.dedup_key}:{notification.channel}".encode()).hexdigest()[:32]
    return f"<{digest}@{urlsplit(settings.SITE_URL).hostname or 'steerco'}>"


def _render(notification: Notification) -> tuple[str, str]:
    if notification.kind in formats.LAYOUTS:  # its own layout, from its stored payload
        return formats.render_email(notification)
    context = {
        "notification": notification,
        "url": settings.SITE_URL + notification.url if notification.url else "",
        "org": notification.organization,
    }
    return (
        render_to_string("escalations/email/notification.txt", context),
        render_to_string("escalations/email/notification.html", context),
    )

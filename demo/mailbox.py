"""The development mailbox: on the embedded default (`make run`, no EMAIL_URL) every email is written to
var/mail/ as one .eml file and logged as one line; /dev/mail/ lists them so that an invitation or a password
reset can be followed without a mail server."""

from __future__ import annotations

import logging
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils import timezone

log = logging.getLogger(__name__)


def _folder() -> Path:
    return Path(settings.EMAIL_FILE_PATH)


class FileEmailBackend(BaseEmailBackend):
    """One file per message (Django's own file backend appends a whole connection's messages to one log)."""

    def send_messages(self, email_messages) -> int:
        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            name = f"{timezone.now():%Y%m%d-%H%M%S-%f}.eml"
            (folder / name).write_bytes(message.message().as_bytes())
            log.info("email to %s: %s (/dev/mail/%s)", ", ".join(message.recipients()), message.subject, name)
        return len(email_messages)


def _read(path: Path) -> EmailMessage:
    with path.open("rb") as file:
        return BytesParser(policy=policy.default).parse(file)


def _message(name: str) -> EmailMessage:
    path = _folder() / name
    # The name comes from the URL: only a file this backend wrote, directly in the folder.
    if not settings.DEBUG or path.parent != _folder() or path.suffix != ".eml" or not path.is_file():
        raise Http404("No such email.")
    return _read(path)


def mailbox(request):
    if not settings.DEBUG:
        raise Http404("The development mailbox exists only with DEBUG on.")
    paths = sorted(_folder().glob("*.eml"), reverse=True)[:200] if _folder().is_dir() else []
    emails = []
    for path in paths:
        message = _read(path)
        emails.append({"name": path.name, "message": message, "sent": message["date"].datetime})
    return render(request, "demo/mailbox.html", {"emails": emails})


def mail_message(request, name: str):
    message = _message(name)
    text = message.get_body(preferencelist=("plain",))
    return render(
        request,
        "demo/mail_message.html",
        {
            "name": name,
            "message": message,
            "text": text.get_content() if text else "",
            "has_html": message.get_body(preferencelist=("html",)) is not None,
        },
    )


def mail_html(request, name: str):
    html = _message(name).get_body(preferencelist=("html",))
    if html is None:
        raise Http404("This email has no HTML part.")
    response = HttpResponse(html.get_content())
    # The email's own markup, shown as the recipient's mail client would, without its scripts or our session.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return response

"""The development mailbox: emails of the embedded default become files, one log line each, listed at /dev/mail/."""

from __future__ import annotations

import logging

import pytest
from django.core.mail import EmailMultiAlternatives

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailbox(settings, tmp_path):
    settings.EMAIL_BACKEND = "demo.mailbox.FileEmailBackend"
    settings.EMAIL_FILE_PATH = tmp_path
    settings.DEBUG = True
    return tmp_path


def _send(subject="You are invited to Acme", to="new.hire@acme.test"):
    email = EmailMultiAlternatives(subject, "Accept: http://127.0.0.1:8300/invitations/abc/", to=[to])
    email.attach_alternative("<p>Accept <a href='x'>here</a><script>alert(1)</script></p>", "text/html")
    email.send()


def test_each_email_is_one_file_and_one_log_line(mailbox, caplog):
    with caplog.at_level(logging.INFO, logger="demo.mailbox"):
        _send()
        _send(subject="Password reset")
    assert len(list(mailbox.glob("*.eml"))) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "demo.mailbox"]
    assert len(lines) == 2
    assert lines[0].startswith("email to new.hire@acme.test: You are invited to Acme (/dev/mail/")
    assert all("\n" not in line for line in lines)


def test_the_mailbox_lists_and_shows_emails(client, mailbox):
    _send()
    listing = client.get("/dev/mail/")
    assert listing.status_code == 200
    assert b"You are invited to Acme" in listing.content
    name = next(mailbox.glob("*.eml")).name
    message = client.get(f"/dev/mail/{name}/")
    assert b"http://127.0.0.1:8300/invitations/abc/" in message.content
    html = client.get(f"/dev/mail/{name}/html/")
    assert html["Content-Security-Policy"].startswith("sandbox")  # the email's script cannot run as our page


def test_the_mailbox_is_empty_with_a_sentence(client, mailbox):
    assert b"No email yet" in client.get("/dev/mail/").content


def test_only_files_of_the_mailbox_are_served(client, mailbox, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.eml"
    outside.write_text("Subject: secret\n\nsecret")
    assert client.get("/dev/mail/..%2Fsecret.eml/").status_code == 404
    assert client.get("/dev/mail/missing.eml/").status_code == 404


def test_without_debug_the_mailbox_does_not_exist(client, mailbox, settings):
    _send()
    settings.DEBUG = False
    assert client.get("/dev/mail/").status_code == 404
    assert client.get(f"/dev/mail/{next(mailbox.glob('*.eml')).name}/").status_code == 404

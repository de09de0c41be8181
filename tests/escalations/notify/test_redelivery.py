"""Email delivery through a real worker process killed mid-batch and the broker's redelivery: every message is sent,
each row is delivered once, and at most the one message in flight is sent twice, with the same Message-ID."""

from __future__ import annotations

import os
import signal
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from escalations.models import Notification
from escalations.tasks import deliver_notifications
from tests.escalations.factories import NotificationFactory
from tests.escalations.test_celery import purge_queue, wait_until
from tests.factories import MembershipFactory
from tests.scorecards.evaluation.test_sweep_celery import _subprocess_env, _worker

pytestmark = [
    pytest.mark.skipif(
        not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
        reason="needs the real broker (Redis) and PostgreSQL row locks",
    ),
    pytest.mark.django_db(transaction=True),
]
COUNT = 300


class SmtpSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP for Django's backend: records each message's Message-ID, a little slowly, like a real
    server, so that the sweep is still running when it is killed."""

    daemon_threads = allow_reuse_address = True

    def __init__(self):
        self.message_ids: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _SmtpHandler)


class _SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self):
        self.reply("220 sink")
        while line := self.rfile.readline():
            verb = line.decode().strip().split(" ")[0].upper()
            if verb == "EHLO":
                self.reply("250 sink")
            elif verb == "DATA":
                self.reply("354 go on")
                message_id = ""
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    if data.lower().startswith(b"message-id:"):
                        message_id = data.decode().split(":", 1)[1].strip()
                time.sleep(0.02)
                with self.server.lock:
                    self.server.message_ids.append(message_id)
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                self.reply("250 ok")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_delivery_sweep_killed_mid_batch_is_redelivered_and_sends_each_email_once_but_the_one_in_flight(sink):
    member = MembershipFactory()
    now = timezone.now()
    for i in range(COUNT):
        NotificationFactory(recipient=member, channel="email", dedup_key=f"k{i}", created_at=now, next_attempt_at=now)
    purge_queue()
    env = _subprocess_env() | {"CELERY_VISIBILITY_TIMEOUT": "3", "TEST_SMTP_PORT": str(sink.server_address[1])}
    worker = _worker(env)
    try:
        deliver_notifications.delay()
        wait_until(lambda: len(sink.message_ids) >= 20, 90, "the first emails")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        sent_before = Notification.objects.exclude(delivered_at=None).count()
        assert 0 < sent_before < COUNT, "the sweep finished before it could be killed"
        # The killed batch's lease would run out after fanout.LEASE; the test does not wait five minutes for it.
        Notification.objects.filter(delivered_at=None).update(next_attempt_at=timezone.now())
        time.sleep(4)  # past the visibility timeout: the unacknowledged task becomes visible again
        worker = _worker(env)
        wait_until(lambda: not Notification.objects.filter(delivered_at=None).exists(), 120, "the redelivered sweep")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    ids = Counter(sink.message_ids)
    assert len(ids) == COUNT  # every message arrived
    assert sum(ids.values()) - COUNT <= 1  # only the one in flight at the kill came twice, same Message-ID
    assert set(Notification.objects.values_list("attempts", flat=True)) <= {1, 2}

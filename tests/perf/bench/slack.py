"""`make bench` (part 10): Slack, against the fake Slack Web API on loopback (tests/escalations/slack/fake_slack.py).

1. Fan-out: one escalation announced to MEMBERS linked members, then the delivery sweep sends their Slack direct
   messages (conversations.open + chat.postMessage each, every message kept for updates): Slack messages per second.
   The fake answers at once, so this is Steerco's own cost per message (two API calls, the message's context read,
   the bot token decrypted), side by side with an email's. The goal is modest on purpose: Slack itself paces
   chat.postMessage (about one message per second per conversation), so a fan-out waits on Slack, not on us.
2. Interactivity: CLICKS signed "Acknowledge" clicks from 10 concurrent clients to the interactivity endpoint served
   by a threaded WSGI server: p50 and p99 answer time (Slack gives up after 3 s). The decisions themselves are queued
   for a worker, which this bench does not run; the queue is purged at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from socketserver import ThreadingMixIn
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from config.celery import app as celery_app  # noqa: E402
from escalations.models import Notification, SlackInstallation, SlackLink, SlackMessage, Task  # noqa: E402
from escalations.notify.fanout import Message, deliver_due, notify  # noqa: E402
from governance import tenancy  # noqa: E402
from governance.models import Membership, User  # noqa: E402
from governance.services.secrets import secret_set  # noqa: E402
from tests.escalations.factories import WorkstreamFactory  # noqa: E402
from tests.escalations.slack.fake_slack import serve  # noqa: E402
from tests.factories import KpiFactory, OrganizationFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

MEMBERS = int(os.environ.get("BENCH_SLACK_MEMBERS", "1000"))
CLICKS = int(os.environ.get("BENCH_SLACK_CLICKS", "500"))  # the first 20 from one client alone
CLIENTS = 10
SECRET = "bench-signing-secret"
TEAM = "T0BENCH"


def build():
    org = OrganizationFactory(slug="bench-slack")
    users = User.objects.bulk_create(User(email=f"m{i}@bench.test", name=f"Member {i}") for i in range(MEMBERS))
    members = Membership.objects.bulk_create(Membership(organization=org, user=u, role="member") for u in users)
    kpi = KpiFactory(organization=org, owner=members[0])
    ws = WorkstreamFactory(kpi=kpi)
    due = timezone.now() + timedelta(days=1)
    Task.objects.bulk_create(
        Task(organization=org, kind="escalation", assignee=m, kpi=kpi, workstream=ws, due_at=due, dedup_key=f"b{m.pk}")
        for m in members
    )
    SlackInstallation.objects.create(organization=org, team_id=TEAM, team_name="Bench")
    SlackLink.objects.bulk_create(
        SlackLink(organization=org, membership=m, team_id=TEAM, user_id=f"U{m.pk}", how="email") for m in members
    )
    with tenancy.scope(organization=org.pk):
        secret_set(org=org, actor=None, name="slack_bot_token", value="xoxb-bench")
    return org, members, ws


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def click(base: str, team: str, user: str, message_id: int) -> float:
    payload = {
        "type": "block_actions",
        "team": {"id": team},
        "user": {"id": user, "team_id": team},
        "trigger_id": f"t{message_id}",
        "actions": [{"action_id": "acknowledge", "value": str(message_id), "action_ts": str(time.time())}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        base + "/slack/interactivity/",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
        },
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status
    return time.perf_counter() - started


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    fake, fake_server = serve()
    settings.SLACK_API_URL = fake.url + "/api/"
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    try:
        with tenancy.scope(system=True):
            org, members, ws = build()
            message = Message(kind="escalation", subject="Escalation: Bench KPI", body="Off track", url="/o/bench/")
            notify(recipients=members, message=message, dedup_key="bench", workstream=ws)
            # The same sweep twice, side by side: first the emails alone (to the in-memory mail backend), then the
            # Slack messages alone, so that the ratio says what a Slack message costs against an email.
            rows = Notification.objects.filter(organization=org)
            rows.filter(channel="slack").update(next_attempt_at=timezone.now() + timedelta(days=1))
            started = time.perf_counter()
            deliver_due()
            emails = time.perf_counter() - started
            rows.filter(channel="slack").update(next_attempt_at=timezone.now())
            started = time.perf_counter()
            deliver_due()
            elapsed = time.perf_counter() - started
            sent = SlackMessage.objects.filter(organization=org).count()
            assert sent == MEMBERS, sent
            assert rows.filter(delivered_at=None).count() == 0
        print(f"slack, fan-out of one escalation to {MEMBERS} linked members (fake Slack on loopback):")
        record("slack", f"delivery sweep, {MEMBERS} emails", emails, "s")
        record("slack", f"delivery sweep, {MEMBERS} Slack messages", elapsed, "s")
        rate = sent / elapsed
        record("slack", "Slack messages sent per second", rate, "msg/s", goal=">= 10/s", met=rate >= 10)
        record("slack", "ratio Slack message / email, time each", elapsed / emails, "x")

        with tenancy.scope(system=True):
            targets = list(SlackMessage.objects.filter(organization=org).values_list("pk", "recipient_id")[:CLICKS])
        server = make_server("127.0.0.1", 0, get_wsgi_application(), ThreadingServer, QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        alone = [click(base, TEAM, f"U{member}", pk) for pk, member in targets[: CLIENTS * 2]]  # one client
        with ThreadPoolExecutor(CLIENTS) as pool:
            times = list(pool.map(lambda t: click(base, TEAM, f"U{t[1]}", t[0]), targets[CLIENTS * 2 :]))
        server.shutdown()
        times.sort()
        p99 = times[int(len(times) * 0.99) - 1]
        print(f"slack, {len(times)} Acknowledge clicks from {CLIENTS} concurrent clients (after {len(alone)} alone):")
        record("slack", "interactivity answer, one client, median", statistics.median(alone[CLIENTS:]) * 1000, "ms")
        record("slack", "interactivity answer, p50", statistics.median(times) * 1000, "ms")
        record("slack", "interactivity answer, p99", p99 * 1000, "ms", goal="< 3,000 ms (Slack's limit)", met=p99 < 3)
    finally:
        fake_server.shutdown()
        celery_app.control.purge()  # the queued decisions: no worker runs in this bench
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()

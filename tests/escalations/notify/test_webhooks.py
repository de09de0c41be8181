"""Webhooks against a real HTTP server on 127.0.0.1: signatures, Slack bodies, retries with backoff, timeouts,
dedup, and the pages."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from escalations.engine.blocks import event
from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import EscalationLevel, EscalationPolicy, Webhook, WebhookDelivery, Workstream
from escalations.notify.services import webhook_create
from escalations.notify.webhooks import announce, backoff, deliver_webhooks
from governance.models import AuditEvent
from scorecards.models import Kpi, StatusChange
from tests.conftest import Tenant

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@dataclass
class Receiver:
    """What the test server answers (status codes in turn, the last one repeats) and what it was sent."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    requests: list[dict] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the test server listens on loopback
    settings.WEBHOOK_READ_TIMEOUT = 0.5
    settings.WEBHOOK_CONNECT_TIMEOUT = 0.5
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if state.delay:
                time.sleep(state.delay)
            status = state.answer()
            try:
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver broke")
            except BrokenPipeError:  # the client timed out and left: that is the point of the timeout test
                pass

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def breach(tenant) -> Tenant:
    """A policy that escalates to the team lead after 2d, then exhausts after 1d."""
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard")
    tenant.kpi.refresh_from_db()
    return tenant


def hook(tenant: Tenant, url: str, **fields) -> Webhook:
    return webhook_create(org=tenant.org, actor=tenant.admin.user, name=fields.pop("name", "Ops"), url=url, **fields)


def open_episode(tenant: Tenant, at: datetime = T0) -> Workstream:
    StatusChange.objects.create(
        organization=tenant.org,
        kpi=tenant.kpi,
        old="on_track",
        new="off_track",
        value=1,
        reason="dropped",
        changed_at=at,
    )
    with time_machine.travel(at, tick=False):
        process_status_changes(now=at)
    return Workstream.objects.get(kpi=tenant.kpi)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- deliveries are created with the events -----------------------------------------------------------


def test_each_workstream_event_creates_one_delivery_per_active_webhook(breach, receiver):
    active, other = hook(breach, receiver.url), hook(breach, receiver.url, name="Second")
    hook(breach, receiver.url, name="Off").__class__.objects.filter(name="Off").update(is_active=False)
    ws = open_episode(breach)
    for at in (T0 + 2 * DAY, T0 + 3 * DAY):
        with time_machine.travel(at, tick=False):
            advance_escalations(now=at)
    events = ["workstream.opened", "workstream.escalated", "workstream.exhausted"]
    for webhook in (active, other):
        assert list(webhook.deliveries.order_by("id").values_list("event", flat=True)) == events
    assert not WebhookDelivery.objects.filter(webhook__name="Off").exists()
    opened = active.deliveries.get(event="workstream.opened").payload
    assert {k: opened["kpi"][k] for k in ("key", "name", "owner", "target", "unit")} == {
        "key": "ops.throughput",
        "name": "Throughput",
        "owner": "lead@acme.test",
        "target": 1200.0,
        "unit": "leads",
    }
    assert opened["ask"]["what"].startswith("The owner files a mitigation path")
    assert opened["ask"]["due_at"] == (T0 + 2 * DAY).isoformat()  # the policy's mitigation_due
    assert opened["workstream"]["id"] == ws.pk and opened["workstream"]["severity"] == "off_track"
    assert opened["occurred_at"] == T0.isoformat() and opened["organization"]["slug"] == "acme"
    assert opened["workstream"]["url"].endswith(f"/o/acme/workstreams/{ws.pk}/")


def test_a_rolled_back_event_announces_nothing(breach, receiver):
    hook(breach, receiver.url)
    ws = open_episode(breach)
    before = WebhookDelivery.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        event(ws, T0 + HOUR, "resolved", "Recovered")
        raise RuntimeError("the sweep crashed before its commit")
    assert WebhookDelivery.objects.count() == before


def test_the_same_event_announced_twice_is_one_delivery(breach, receiver):
    webhook = hook(breach, receiver.url)
    ws = open_episode(breach)
    announce(ws, T0 + HOUR, "path_filed", "Filed")
    announce(ws, T0 + HOUR, "path_filed", "Filed")
    announce(ws, T0 + HOUR, "status", "Not a webhook verb")
    assert list(webhook.deliveries.values_list("event", flat=True).order_by("id")) == [
        "workstream.opened",
        "workstream.path_filed",
    ]


# --- posting -----------------------------------------------------------------------------------


def test_posts_are_signed_and_the_signature_verifies(breach, receiver):
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    assert deliver_webhooks(now=T0) == 1
    [request] = receiver.requests
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Steerco-Event"] == "workstream.opened"
    assert request["headers"]["X-Steerco-Signature"] == signature(webhook.secret, request["body"])
    assert hmac.compare_digest(request["headers"]["X-Steerco-Signature"], signature(webhook.secret, request["body"]))
    assert request["headers"]["X-Steerco-Signature"] != signature(webhook.secret, request["body"] + b" ")
    assert json.loads(request["body"])["event"] == "workstream.opened"
    delivery = webhook.deliveries.get()
    assert (delivery.delivered_at, delivery.status_code, delivery.attempts, delivery.error) == (T0, 200, 1, "")
    assert delivery.attempt_log[0]["status"] == 200


def test_the_secret_is_derived_not_stored_and_rotation_changes_it(breach, receiver, settings):
    webhook = hook(breach, receiver.url)
    assert "secret" not in {f.name for f in Webhook._meta.get_fields()}
    expected = hmac.new(settings.WEBHOOK_KEY.encode(), f"webhook:{webhook.pk}:1".encode(), hashlib.sha256).hexdigest()
    assert webhook.secret == "whsec_" + expected
    old = webhook.secret
    response = breach.client(breach.admin).post(
        reverse("escalations:webhook_detail", args=[breach.org.slug, webhook.pk]), {"action": "rotate"}
    )
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert webhook.secret_version == 2 and webhook.secret != old
    audit = AuditEvent.objects.get(verb="webhook.secret_rotated")
    assert audit.after == {"secret_version": 2} and old not in json.dumps(audit.after)


def test_a_slack_webhook_gets_a_text_body(breach, receiver):
    webhook = hook(breach, receiver.url, slack_format=True)
    open_episode(breach)
    deliver_webhooks(now=T0)
    [request] = receiver.requests
    body = json.loads(request["body"])
    assert list(body) == ["text"]
    assert body["text"].startswith("[Acme] *Throughput*: Throughput is off track: dropped <http")
    assert body["text"].endswith("|Open the workstream>")
    assert request["headers"]["X-Steerco-Signature"] == signature(webhook.secret, request["body"])


def test_a_500_is_retried_with_backoff_and_every_attempt_is_logged(breach, receiver):
    receiver.statuses = [500, 500, 200]
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    assert deliver_webhooks(now=T0) == 0
    delivery = webhook.deliveries.get()
    assert (delivery.attempts, delivery.status_code, delivery.next_attempt_at) == (1, 500, T0 + 2 * MINUTE)
    assert delivery.error == "HTTP 500: receiver broke"
    assert deliver_webhooks(now=T0 + MINUTE) == 0 and len(receiver.requests) == 1  # not due yet
    assert deliver_webhooks(now=T0 + 2 * MINUTE) == 0
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == T0 + 2 * MINUTE + 4 * MINUTE  # the wait doubles
    assert deliver_webhooks(now=T0 + 6 * MINUTE) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.status_code, delivery.error) == (3, 200, "")
    assert (delivery.delivered_at, delivery.next_attempt_at) == (T0 + 6 * MINUTE, None)
    assert [(a["at"], a["status"]) for a in delivery.attempt_log] == [
        (T0.isoformat(), 500),
        ((T0 + 2 * MINUTE).isoformat(), 500),
        ((T0 + 6 * MINUTE).isoformat(), 200),
    ]


def test_it_gives_up_after_the_last_attempt(breach, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    receiver.statuses = [503]
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    deliver_webhooks(now=T0)
    deliver_webhooks(now=T0 + backoff(1))
    delivery = webhook.deliveries.get()
    assert (delivery.attempts, delivery.next_attempt_at, delivery.delivered_at, delivery.state) == (
        2,
        None,
        None,
        "failed",
    )
    assert deliver_webhooks(now=T0 + DAY) == 0 and len(receiver.requests) == 2


def test_a_timeout_is_logged_and_retried(breach, receiver):
    receiver.delay = 1.5  # longer than the 0.5 s read timeout
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    assert deliver_webhooks(now=T0) == 0
    delivery = webhook.deliveries.get()
    assert delivery.error.startswith("Timed out") and delivery.status_code is None
    assert delivery.next_attempt_at == T0 + 2 * MINUTE and delivery.attempt_log[0]["error"].startswith("Timed out")


def test_one_dead_endpoint_does_not_stop_the_others(breach, receiver):
    dead = hook(breach, "http://127.0.0.1:9/nothing-listens-here", name="Dead")
    alive = hook(breach, receiver.url, name="Alive")
    ws = open_episode(breach)
    with time_machine.travel(T0 + HOUR, tick=False):
        announce(ws, T0 + HOUR, "path_filed", "Filed")  # a second event for each: the dead one is tried once only
    assert deliver_webhooks(now=T0 + HOUR) == 2
    assert alive.deliveries.filter(delivered_at__isnull=False).count() == 2
    attempts = sorted(dead.deliveries.values_list("attempts", flat=True))
    assert attempts == [0, 1]  # after one failure the endpoint waits for the next sweep
    failed = dead.deliveries.get(attempts=1)
    assert "ConnectError" in failed.error and failed.next_attempt_at == T0 + HOUR + 2 * MINUTE
    assert dead.deliveries.get(attempts=0).next_attempt_at == T0 + HOUR + MINUTE


def test_a_redelivered_sweep_posts_once(breach, receiver):
    hook(breach, receiver.url)
    open_episode(breach)
    deliver_webhooks(now=T0)
    deliver_webhooks(now=T0)  # the same task again (a redelivery after a lost acknowledgement)
    deliver_webhooks(now=T0 + DAY)
    assert len(receiver.requests) == 1


def test_private_addresses_are_refused_unless_allowed(breach, receiver, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    deliver_webhooks(now=T0)
    assert receiver.requests == []
    assert "127.0.0.1, a private or local address" in webhook.deliveries.get().error


def test_a_deactivated_webhooks_pending_events_are_dropped(breach, receiver):
    webhook = hook(breach, receiver.url)
    open_episode(breach)
    Webhook.objects.filter(pk=webhook.pk).update(is_active=False)
    deliver_webhooks(now=T0)
    delivery = webhook.deliveries.get()
    assert receiver.requests == [] and delivery.next_attempt_at is None and "deactivated" in delivery.error


def test_the_deliver_notifications_command_sends_webhooks_too(breach, receiver, capsys):
    hook(breach, receiver.url)
    open_episode(breach, at=datetime.now(UTC) - MINUTE)
    call_command("deliver_notifications")
    assert "Delivered 1 webhook post(s)." in capsys.readouterr().out and len(receiver.requests) == 1


# --- the pages ----------------------------------------------------------------------------------


def test_an_admin_adds_a_webhook_and_sees_its_secret(tenant, receiver):
    client = tenant.client(tenant.admin)
    response = client.post(
        reverse("escalations:webhook_list", args=[tenant.org.slug]),
        {"name": "Incidents", "url": receiver.url, "slack_format": "on"},
    )
    webhook = Webhook.objects.get(organization=tenant.org, name="Incidents")
    assert response.status_code == 302 and webhook.slack_format and webhook.created_by == tenant.admin.user
    page = client.get(response["Location"]).content.decode()
    assert webhook.secret in page and "X-Steerco-Signature: sha256=" in page
    assert AuditEvent.objects.get(verb="webhook.created").after["url"] == receiver.url
    listing = client.get(reverse("escalations:webhook_list", args=[tenant.org.slug])).content.decode()
    assert "Incidents" in listing and webhook.secret not in listing


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "javascript:alert(1)"])
def test_only_http_and_https_urls_are_accepted(tenant, url):
    response = tenant.client(tenant.admin).post(
        reverse("escalations:webhook_list", args=[tenant.org.slug]), {"name": "Bad", "url": url}
    )
    assert response.status_code == 422 and not Webhook.objects.filter(name="Bad").exists()


def test_send_test_event_posts_now_and_shows_the_log(tenant, receiver):
    Webhook.objects.filter(pk=tenant.webhook.pk).update(url=receiver.url, is_active=True)
    response = tenant.client(tenant.admin).post(
        reverse("escalations:webhook_detail", args=[tenant.org.slug, tenant.webhook.pk]),
        {"action": "test"},
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert "<html" not in html and 'id="deliveries"' in html
    assert "Test event delivered: HTTP 200." in html and "Delivered" in html
    [request] = receiver.requests
    assert request["headers"]["X-Steerco-Event"] == "ping" and json.loads(request["body"])["event"] == "ping"
    assert AuditEvent.objects.filter(verb="webhook.test_sent").count() == 1


def test_a_failing_test_event_is_shown_with_its_error(tenant, receiver):
    receiver.statuses = [500]
    Webhook.objects.filter(pk=tenant.webhook.pk).update(url=receiver.url, is_active=True)
    response = tenant.client(tenant.admin).post(
        reverse("escalations:webhook_detail", args=[tenant.org.slug, tenant.webhook.pk]),
        {"action": "test"},
        follow=True,
    )
    html = response.content.decode()
    assert "Test event failed: HTTP 500: receiver broke" in html and "Retrying" in html


def test_an_admin_deactivates_a_webhook(tenant):
    Webhook.objects.filter(pk=tenant.webhook.pk).update(is_active=True)
    response = tenant.client(tenant.admin).post(
        reverse("escalations:webhook_detail", args=[tenant.org.slug, tenant.webhook.pk]),
        {"action": "edit", "name": "Chat", "url": tenant.webhook.url},
    )
    assert response.status_code == 302
    tenant.webhook.refresh_from_db()
    assert tenant.webhook.is_active is False
    audit = AuditEvent.objects.get(verb="webhook.updated")
    assert (audit.before["is_active"], audit.after["is_active"]) == (True, False)

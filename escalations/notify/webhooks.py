"""Webhooks: workstream events announced to an organization's endpoints, signed, retried with backoff.

A delivery row is created in the transaction of the event it announces (escalations.engine.blocks.event, or a sweep
batch's Journal), so an event that rolls back announces nothing and a committed one is never lost. The sweep
posts due rows outside any transaction: it leases a batch first (next_attempt_at moves past the lease), so two
workers never post one row at once, and a worker that dies mid-post leaves the row to be retried when the lease
runs out (at least once; the X-Steerco-Delivery header lets a receiver drop a repeat).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalations.models import Webhook, WebhookDelivery, Workstream
from escalations.notify import teams
from escalations.notify.channels import retry_after_seconds
from governance import outbound, tenancy
from governance.secrets import SecretMissing
from governance.selectors import secret_value

log = logging.getLogger(__name__)

# The workstream events a webhook hears about (WorkstreamEvent.verb); the others stay on the timeline only.
VERBS = {"opened", "escalated", "exhausted", "resolved", "path_filed", "path_approved", "path_rejected"}
BATCH_SIZE = 100
LEASE = timedelta(minutes=5)  # longer than a batch of posts can take with the timeouts below
MAX_BACKOFF = timedelta(hours=6)
SWEEP_BUDGET = timedelta(seconds=120)  # well inside the task's soft time limit
USER_AGENT = "Steerco-Webhook/1"


@dataclass(frozen=True)
class Occurrence:
    """A workstream event as its webhooks hear of it, taken when it happens: a sweep writes its deliveries later,
    after the workstream has moved on (a catch-up runs several levels) or been given its id (a new episode)."""

    workstream: Workstream
    at: datetime
    verb: str
    text: str
    kind: str
    severity: str
    level: int
    escalation_pass: int
    resolution: str
    due: datetime | None  # when the next escalation step comes: the "by when" of what is asked


# What a webhook's reader is asked to see to, per verb (the others ask nothing).
ASKS = {
    "opened": "The owner files a mitigation path: root cause, actions and expected recovery",
    "escalated": "See that a mitigation path is filed and approved",
    "path_filed": "Review the mitigation path: approve or reject it, with a reason",
    "path_rejected": "The owner files a better mitigation path",
    "exhausted": "Decide how this episode ends: escalation has run out of levels",
}


def heard(ws: Workstream, at: datetime, verb: str, text: str) -> Occurrence | None:
    """The event as webhooks hear of it, or None when its verb is for the timeline only."""
    if verb not in VERBS:
        return None
    return Occurrence(
        ws, at, verb, text, ws.kind, ws.severity, ws.level, ws.escalation_pass, ws.resolution, ws.next_escalation_at
    )


def announce(ws: Workstream, at: datetime, verb: str, text: str) -> None:
    """One delivery per active webhook of the workstream's organization; an event announced before is ignored."""
    if occurrence := heard(ws, at, verb, text):
        announce_all([occurrence])


def announce_all(occurrences: list[Occurrence]) -> None:
    """`announce` for many events at once (a sweep's batch): one read of their organizations' webhooks, one insert."""
    if not occurrences:
        return
    hooks: dict[int, list[Webhook]] = defaultdict(list)
    for hook in Webhook.objects.filter(
        organization_id__in={o.workstream.organization_id for o in occurrences}, is_active=True
    ):
        hooks[hook.organization_id].append(hook)
    if not hooks:
        return
    now = timezone.now()
    rows = []
    for o in occurrences:
        if not hooks.get(o.workstream.organization_id):
            continue
        payload = _payload(o)
        key = f"{o.workstream.pk}:{o.verb}:{o.level}:{o.escalation_pass}:{o.at.isoformat()}"
        rows += [
            WebhookDelivery(
                organization_id=hook.organization_id,
                webhook=hook,
                event=payload["event"],
                payload=payload,
                dedup_key=key,
                created_at=now,
                next_attempt_at=now,
            )
            for hook in hooks[o.workstream.organization_id]
        ]
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)


def _payload(o: Occurrence) -> dict:
    ws = o.workstream
    kpi, org = ws.kpi, ws.organization
    ask = ASKS.get(o.verb)
    return {
        "event": f"workstream.{o.verb}",
        "occurred_at": o.at.isoformat(),
        "text": o.text,
        "organization": {"slug": org.slug, "name": org.name, "timezone": org.timezone},
        "kpi": {
            "key": kpi.key,
            "name": kpi.name,
            "owner": kpi.owner.user.email,
            "owner_name": kpi.owner.user.name or kpi.owner.user.email,
            "status": kpi.status,
            "value": kpi.last_value,
            "target": kpi.target_value,
            "unit": kpi.unit,
        },
        "ask": {"what": ask, "due_at": o.due.isoformat() if o.due and o.verb != "exhausted" else None} if ask else None,
        "workstream": {
            "id": ws.pk,
            "kind": o.kind,
            "severity": o.severity,
            "opened_at": ws.opened_at.isoformat(),
            "level": o.level,
            "pass": o.escalation_pass,
            "resolution": o.resolution or None,
            "url": settings.SITE_URL + reverse("escalations:workstream_detail", args=[org.slug, ws.pk]),
        },
    }


def ping(webhook: Webhook, actor_name: str) -> WebhookDelivery:
    """A test event for `webhook`, due at once (the page's "Send test event")."""
    now = timezone.now()
    org = webhook.organization
    return WebhookDelivery.objects.create(
        organization_id=webhook.organization_id,
        webhook=webhook,
        event="ping",
        payload={
            "event": "ping",
            "occurred_at": now.isoformat(),
            "text": f"Test event from Steerco, sent by {actor_name}. This endpoint will hear about workstreams.",
            "organization": {"slug": org.slug, "name": org.name, "timezone": org.timezone},
        },
        dedup_key=f"ping:{uuid.uuid4().hex}",
        created_at=now,
        next_attempt_at=now,
    )


def body_of(delivery: WebhookDelivery) -> bytes:
    """The exact bytes posted (and signed): the payload, Slack's {"text": ...}, or a Teams card, as the webhook asks."""
    data = delivery.payload
    if delivery.webhook.teams:
        data = teams.message(data)
    elif delivery.webhook.slack_format:
        data = {"text": slack_text(data)}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def slack_text(payload: dict) -> str:
    org = payload.get("organization", {}).get("name", "")
    kpi = payload.get("kpi")
    if kpi is None:
        return f"[{org}] {payload['text']}"
    link = payload["workstream"]["url"]
    return f"[{org}] *{kpi['name']}*: {payload['text']} <{link}|Open the workstream>"


# --- delivery -----------------------------------------------------------------------------------


def deliver_webhooks(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Posts every due delivery; a failure is recorded and retried later with a doubling wait. Returns the count
    delivered. An endpoint that fails is not tried again in the same sweep, so one dead endpoint costs one timeout
    per sweep, not one per event, and never holds up the others."""
    now = now or timezone.now()
    delivered = 0
    failing: set[int] = set()
    deadline = time.monotonic() + SWEEP_BUDGET.total_seconds()
    with _client() as client:
        while batch := _lease(now, org_id):
            for i, delivery in enumerate(batch):
                if time.monotonic() > deadline:
                    # Many slow endpoints: hand the rest back to the next sweep rather than overrun the task.
                    WebhookDelivery.objects.filter(pk__in=[d.pk for d in batch[i:]]).update(next_attempt_at=now)
                    return delivered
                if not delivery.webhook.is_active:
                    _give_up(delivery, "Not sent: the webhook was deactivated.")
                elif delivery.webhook_id in failing:
                    # Leave it for the next sweep, without counting an attempt it never had.
                    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now + timedelta(minutes=1))
                elif attempt(delivery, client, now):
                    delivered += 1
                else:
                    failing.add(delivery.webhook_id)
    return delivered


def _lease(now: datetime, org_id: int | None) -> list[WebhookDelivery]:
    with transaction.atomic():
        due = WebhookDelivery.objects.filter(delivered_at=None, next_attempt_at__lte=now)
        if org_id:
            due = due.filter(organization_id=org_id)
        batch = list(
            due.select_related("webhook__organization")
            .order_by("next_attempt_at", "id")
            .select_for_update(skip_locked=True, of=("self",))[:BATCH_SIZE]
        )
        # Another worker skips these until the lease ends; a crash mid-post retries them after it.
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in batch]).update(next_attempt_at=now + LEASE)
    return batch


def _give_up(delivery: WebhookDelivery, error: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None, error=error)


def attempt(delivery: WebhookDelivery, client: httpx.Client, now: datetime) -> bool:
    """Posts `delivery` once and records the outcome on its row (outside any transaction: no lock is held while
    waiting for the endpoint). True when the endpoint answered 2xx."""
    body = body_of(delivery)
    headers = {
        "Content-Type": "application/json",
        "X-Steerco-Event": delivery.event,
        "X-Steerco-Delivery": str(delivery.pk),
        "X-Steerco-Signature": delivery.webhook.sign(body),
    }
    started, status, error, wait = time.monotonic(), None, "", None
    try:
        response = client.post(_address(delivery.webhook), content=body, headers=headers)
    except SecretMissing as e:
        error = str(e)
    except outbound.Refused as e:
        error = f"Refused: {e}"
    except httpx.TimeoutException as e:
        error = f"Timed out ({type(e).__name__})"
    except (httpx.HTTPError, OSError) as e:  # refused, unreachable, TLS: the next endpoint still gets its turn
        error = f"{type(e).__name__}: {e}"[:500]
    else:
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}: {response.text[:300]}".strip()
        if status == 429 or status >= 500:  # the receiver may say how long to wait; never sooner than that
            wait = retry_after_seconds(response.headers.get("Retry-After"))
    ms = int((time.monotonic() - started) * 1000)
    delivery.attempts += 1
    delivery.status_code, delivery.error = status, error
    delivery.attempt_log = [
        *delivery.attempt_log,
        {"at": now.isoformat(), "status": status, "error": error, "ms": ms},
    ]
    if error:
        log.warning("webhook delivery %s to webhook %s failed: %s", delivery.pk, delivery.webhook_id, error)
        delivery.next_attempt_at = (
            None
            if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS
            else now + max(backoff(delivery.attempts), timedelta(seconds=wait or 0))
        )
    else:
        delivery.delivered_at, delivery.next_attempt_at = now, None
    delivery.save(update_fields=["attempts", "status_code", "error", "attempt_log", "next_attempt_at", "delivered_at"])
    return not error


def _address(webhook: Webhook) -> str:
    """Where to post: a Teams webhook's URL is a credential, read from the organization's secret at each post (in
    the organization's own scope, the only one that sees its secrets, as a pull reads its source's)."""
    if not webhook.teams:
        return webhook.url
    with tenancy.scope(organization=webhook.organization_id):
        return secret_value(org=webhook.organization, name=teams.SECRET_NAME)


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure: 2, 4, 8 ... minutes, at most MAX_BACKOFF."""
    return min(timedelta(minutes=2**attempts), MAX_BACKOFF)


def deliver_now(delivery: WebhookDelivery) -> WebhookDelivery:
    """One attempt right away (the test event), with the sweep's timeouts; failures retry like any other."""
    with _client() as client:
        attempt(delivery, client, timezone.now())
    return delivery


def _client() -> httpx.Client:
    return outbound.client(
        allow_setting="WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        timeout=httpx.Timeout(settings.WEBHOOK_READ_TIMEOUT, connect=settings.WEBHOOK_CONNECT_TIMEOUT),
        follow_redirects=False,  # a receiver has no reason to redirect a signed event elsewhere
        headers={"User-Agent": USER_AGENT},
    )

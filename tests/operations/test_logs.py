"""Structured logs: JSON lines, one per request and per task, and no token, secret or password ever in them."""

from __future__ import annotations

import io
import json
import logging
import re
import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_guid.log_filters import CorrelationId

from config.operations.logs import json_formatter
from escalations.tasks import process_status_changes
from scorecards.tasks import evaluate_kpis
from tests.test_platform import celery_worker  # noqa: F401  (the suite's one way to run a real worker)

RESET_LINK = re.compile(r"http://testserver(/password-reset/[^/\s]+/[^/\s]+/)")
INVITE_LINK = re.compile(r"http://testserver/invitations/([A-Za-z0-9_-]+)/")


@pytest.fixture
def json_log():
    """Every log line of the test, as production writes them (LOG_FORMAT=json, level INFO)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(CorrelationId())
    root = logging.getLogger()
    level, root.level = root.level, logging.INFO
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)
    root.level = level


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def wait_for(what: str, done) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_run_logs_no_token_secret_or_password(celery_worker, json_log, tenant, settings):  # noqa: F811
    settings.PASSWORD_RESET_EMAIL_LIMIT = settings.PASSWORD_RESET_IP_LIMIT = 100
    admin = tenant.client(tenant.admin)
    org = tenant.org.slug
    made: dict[str, str] = {"secret value": "s3cret-value-of-the-crm-Zq81", "new password": "Blue-Harbor-Lantern-93"}

    created = admin.post(reverse("governance:api_tokens", args=[org]), {"name": "Loader", "kind": "personal"})
    made["api token"] = created.context["created"][1]
    assert (
        admin.post(
            reverse("governance:secrets", args=[org]), {"name": "crm", "value": made["secret value"]}
        ).status_code
        < 400
    )
    assert Client().get("/api/v1/kpis", HTTP_AUTHORIZATION=f"Bearer {made['api token']}").status_code == 200
    assert Client().get("/api/v1/kpis", HTTP_AUTHORIZATION=f"Bearer {made['api token']}x").status_code == 401

    admin.post(reverse("governance:member_list", args=[org]), {"email": "newcomer@acme.test", "role": "member"})
    made["invitation token"] = INVITE_LINK.search(mail.outbox[-1].body).group(1)
    assert Client().get(f"/invitations/{made['invitation token']}/").status_code == 302

    visitor = Client()
    visitor.post("/password-reset/", {"email": tenant.member.user.email})
    reset = RESET_LINK.search(mail.outbox[-1].body).group(1)
    made["password reset token"] = reset.rstrip("/").rsplit("/", 1)[1]
    form = visitor.get(reset, follow=True)
    visitor.post(
        form.redirect_chain[-1][0], {"new_password1": made["new password"], "new_password2": made["new password"]}
    )
    signed_in = visitor.post("/login/", {"username": tenant.member.user.email, "password": made["new password"]})
    assert signed_in.status_code == 302  # the reset went through: its token and the new password were used

    before = len([line for line in lines(json_log) if line["event"] == "task"])
    evaluate_kpis.delay(tenant.org.pk)
    process_status_changes.delay()
    wait_for(
        "the worker never ran both tasks",
        lambda: len([x for x in lines(json_log) if x["event"] == "task"]) >= before + 2,
    )

    text = json_log.getvalue()
    leaked = {what for what, value in made.items() if value in text}
    assert not leaked, f"the logs hold the {leaked}"
    people = {m.user.email for m in (tenant.admin, tenant.member, tenant.executive, tenant.lead)} | {
        "newcomer@acme.test"
    }
    assert not {email for email in people if email in text}
    assert tenant.org.name not in text and f"/o/{org}/" not in text

    records = lines(json_log)
    requests = [r for r in records if r["event"] == "request"]
    assert len(requests) >= 9 and all(r["request_id"] and r["view"] and r["duration_ms"] >= 0 for r in requests)
    token_view = next(r for r in requests if r["view"] == "governance:api_tokens")
    assert (token_view["organization_id"], token_view["user_id"]) == (tenant.org.pk, tenant.admin.user.pk)
    tasks = {r["task"]: r for r in records if r["event"] == "task"}
    assert tasks["scorecards.tasks.evaluate_kpis"]["organization_id"] == tenant.org.pk
    assert tasks["escalations.tasks.process_status_changes"]["organization_id"] is None
    assert all(r["state"] == "SUCCESS" and r["duration_ms"] > 0 for r in tasks.values())


def test_one_line_per_request(json_log, tenant):
    client = tenant.client(tenant.member)
    for _ in range(3):
        client.get(f"/o/{tenant.org.slug}/")
    requests = [r for r in lines(json_log) if r["event"] == "request"]
    assert len(requests) == 3 and len({r["request_id"] for r in requests}) == 3
    assert {r["organization_id"] for r in requests} == {tenant.org.pk}
    assert {r["user_id"] for r in requests} == {tenant.member.user.pk}

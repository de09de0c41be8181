from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from django.test import Client

from config.celery import app as celery_app
from escalations.models import SlackInstallation
from escalations.slack import services
from governance import tenancy
from tests.conftest import Tenant
from tests.escalations.slack.fake_slack import serve

SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
def fake_slack(settings):
    fake, server = serve()
    settings.SLACK_API_URL = fake.url + "/api/"
    settings.SLACK_OAUTH_AUTHORIZE_URL = fake.url + "/oauth/v2/authorize"
    settings.SLACK_CLIENT_ID, settings.SLACK_CLIENT_SECRET = "123.456", "client-secret"
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    yield fake
    server.shutdown()


@pytest.fixture
def eager():
    """Slack's clicks run their Celery task in the request (the real-worker test is test_slack_celery.py)."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def connect(t: Tenant, fake, team: dict | None = None) -> SlackInstallation:
    """The organization's workspace connected through the OAuth exchange, its executive, lead and admin linked."""
    if team:
        fake.team = team
    prefix = fake.team["id"]
    for m, name in ((t.executive, "EXEC"), (t.lead, "LEAD"), (t.admin, "ADMIN")):
        fake.users_by_email[m.user.email] = f"U{prefix}{name}"
    with tenancy.scope(organization=t.org.pk):
        return services.installation_connect(org=t.org, actor=t.admin.user, code="good-code", redirect_uri="x")


def signed(path: str, body: str, *, secret: str = SIGNING_SECRET, at: int | None = None, retry: int | None = None):
    """A request as Slack sends it: v0 signature over `v0:<timestamp>:<body>`."""
    stamp = str(at if at is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    if retry is not None:
        headers["X-Slack-Retry-Num"] = str(retry)
    return Client().post(path, body, content_type="application/x-www-form-urlencoded", headers=headers)


def payload_body(payload: dict) -> str:
    return urlencode({"payload": json.dumps(payload)})


def click(team: str, user: str, action: str, message_id: int) -> dict:
    return {
        "type": "block_actions",
        "team": {"id": team},
        "user": {"id": user, "team_id": team},
        "trigger_id": f"trigger-{action}-{message_id}",
        "actions": [{"action_id": action, "value": str(message_id), "block_id": "steerco", "action_ts": "1.2"}],
    }


def submission(team: str, user: str, action: str, message_id: int, reason: str, impact: str = "") -> dict:
    values = {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}
    if impact:
        values["impact"] = {"impact_input": {"type": "radio_buttons", "selected_option": {"value": impact}}}
    return {
        "type": "view_submission",
        "team": {"id": team},
        "user": {"id": user, "team_id": team},
        "view": {
            "callback_id": "path_review",
            "private_metadata": json.dumps({"message": message_id, "action": action}),
            "state": {"values": values},
        },
    }

"""Microsoft Teams: Adaptive Cards validated against the vendored Adaptive Card schema (tests/fixtures/adaptive_cards),
posted to a fake Teams endpoint on 127.0.0.1; the URL kept as an organization secret; Retry-After honoured; the
admin page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from jsonschema.validators import validator_for

from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import EscalationLevel, EscalationPolicy, Webhook, WebhookDelivery, Workstream
from escalations.notify import teams
from escalations.notify.webhooks import deliver_webhooks
from governance import tenancy
from governance.models import AuditEvent, Secret
from governance.selectors import secret_value
from governance.services.secrets import secret_delete
from scorecards.models import Kpi, StatusChange

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
SCHEMA = json.loads((Path(__file__).parents[2] / "fixtures/adaptive_cards/adaptive-card-1.5.json").read_text())


def assert_valid_card(body: dict) -> dict:
    assert body["type"] == "message" and len(body["attachments"]) == 1
    attachment = body["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    validator = validator_for(SCHEMA)(SCHEMA)
    errors = sorted(validator.iter_errors(card), key=str)
    assert not errors, [e.message for e in errors]
    assert card["type"] == "AdaptiveCard" and tuple(map(int, card["version"].split("."))) >= (1, 4)
    return card


def facts(card: dict) -> dict[str, str]:
    return {f["title"]: f["value"] for block in card["body"] if block["type"] == "FactSet" for f in block["facts"]}


@pytest.fixture
def connected(tenant, remote):
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard", status="off_track", last_value=700)
    with in_org(tenant):
        teams.teams_connect(org=tenant.org, actor=tenant.admin.user, url=remote.url)
    return tenant


def in_org(tenant):
    """The organization's own scope, as its admin's request has: the only one that sees (and writes) its secrets."""
    return tenancy.scope(organization=tenant.org.pk)


def open_episode(tenant) -> Workstream:
    StatusChange.objects.create(
        organization=tenant.org, kpi=tenant.kpi, old="on_track", new="off_track", value=700, changed_at=T0
    )
    with time_machine.travel(T0, tick=False):
        process_status_changes(now=T0)
    return Workstream.objects.get(kpi=tenant.kpi)


def test_every_event_posts_a_valid_adaptive_card_with_the_facts_and_open_in_steerco(connected, remote):
    ws = open_episode(connected)
    for at in (T0 + 2 * DAY, T0 + 3 * DAY):  # escalated to the team lead, then exhausted
        with time_machine.travel(at, tick=False):
            advance_escalations(now=at)
    assert deliver_webhooks(now=T0 + 3 * DAY) == 3
    cards = [assert_valid_card(body) for body in remote.bodies]
    assert [r["path"] for r in remote.requests] == ["/webhookb2/abc/IncomingWebhook/def"] * 3  # the secret's URL
    opened = cards[0]
    assert facts(opened) == {
        "Value": "700 leads (target 1,200 leads)",
        "Owner": connected.lead.user.name,
        "Asked": "The owner files a mitigation path: root cause, actions and expected recovery",
        "By": "Wed 4 Nov 09:00 (Europe/Berlin)",  # opened + mitigation_due, in the organization's zone
    }
    texts = [block.get("text") for block in opened["body"]]
    assert "Throughput" in texts and "Off track" in texts
    [action] = opened["actions"]
    assert action["type"] == "Action.OpenUrl" and action["title"] == "Open in Steerco"
    assert action["url"].endswith(reverse("escalations:workstream_detail", args=["acme", ws.pk]))
    assert facts(cards[1])["Asked"] == "See that a mitigation path is filed and approved"
    assert "By" not in facts(cards[2])  # exhausted: someone decides, with no next step to race


def test_the_schema_refuses_a_broken_card():
    card = teams.card({"text": "x", "organization": {"name": "Acme"}})
    card["actions"][0]["type"] = "Action.Teleport"
    assert list(validator_for(SCHEMA)(SCHEMA).iter_errors(card))


def test_connecting_keeps_the_url_in_a_secret_and_audits_only_its_host(connected, remote):
    hook = Webhook.objects.get(organization=connected.org, teams=True)
    with in_org(connected):
        assert secret_value(org=connected.org, name=teams.SECRET_NAME) == remote.url
    assert hook.url == remote.url.split("/webhookb2")[0] + "/" and hook.is_active
    event = AuditEvent.objects.get(verb="teams.connected")
    assert event.after == {"host": remote.url.split("/")[2]}
    assert not any("IncomingWebhook" in json.dumps([e.before, e.after]) for e in AuditEvent.objects.all())
    with in_org(connected), pytest.raises(ValidationError):  # the secret is in use while Teams is connected
        secret_delete(secret=Secret.objects.get(organization=connected.org, name=teams.SECRET_NAME), actor=None)


def test_a_bad_url_is_refused_and_changes_nothing(tenant):
    with in_org(tenant), pytest.raises(ValidationError) as error:
        teams.teams_connect(org=tenant.org, actor=tenant.admin.user, url="teams channel please")
    assert "url" in error.value.message_dict
    with in_org(tenant):
        assert not Webhook.objects.filter(teams=True).exists() and not Secret.objects.filter(name="teams_webhook_url")


def test_a_429_waits_as_long_as_retry_after_says_and_still_counts_the_attempt(connected, remote):
    remote.answers = [(429, {"Retry-After": "3600"}), (503, {"Retry-After": "1"}), (200, {})]
    open_episode(connected)
    delivery = WebhookDelivery.objects.get(webhook__teams=True)
    assert deliver_webhooks(now=T0) == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.next_attempt_at == T0 + HOUR  # not the 2 minutes of backoff
    assert deliver_webhooks(now=T0 + 59 * timedelta(minutes=1)) == 0 and len(remote.requests) == 1
    assert deliver_webhooks(now=T0 + HOUR) == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at == T0 + HOUR + timedelta(minutes=4)  # backoff floor
    assert deliver_webhooks(now=T0 + 2 * HOUR) == 1 and len(remote.requests) == 3


def test_a_missing_secret_is_a_failure_in_plain_words_not_a_crash(connected, remote):
    with in_org(connected):
        Secret.objects.filter(organization=connected.org, name=teams.SECRET_NAME).delete()
    open_episode(connected)
    assert deliver_webhooks(now=T0) == 0 and not remote.requests
    assert "teams_webhook_url" in WebhookDelivery.objects.get(webhook__teams=True).error


def test_disconnecting_stops_the_cards_and_deletes_the_url(connected, remote):
    with in_org(connected):
        teams.teams_disconnect(org=connected.org, actor=connected.admin.user)
        assert not Secret.objects.filter(organization=connected.org, name=teams.SECRET_NAME).exists()
    open_episode(connected)
    assert not WebhookDelivery.objects.exists()  # an inactive webhook hears nothing
    assert AuditEvent.objects.filter(verb="teams.disconnected").count() == 1
    with in_org(connected), pytest.raises(ValidationError):
        teams.teams_disconnect(org=connected.org, actor=connected.admin.user)


# --- the page ----------------------------------------------------------------------------------------------------


def page(tenant) -> str:
    return reverse("escalations:teams_settings", args=[tenant.org.slug])


def test_an_admin_connects_sends_a_test_card_and_disconnects_from_the_page(tenant, remote):
    client = tenant.client(tenant.admin)
    assert "Not connected" in client.get(page(tenant)).content.decode()
    response = client.post(page(tenant), {"action": "connect", "url": remote.url})
    assert response.status_code == 302
    html = client.get(page(tenant)).content.decode()
    assert "Connected" in html and "IncomingWebhook" not in html  # the credential is never shown again
    client.post(page(tenant), {"action": "test"})
    card = assert_valid_card(remote.bodies[0])
    assert "Test event from Steerco" in json.dumps(card)
    assert AuditEvent.objects.filter(verb="webhook.test_sent").count() == 1
    assert "test card delivered" in client.get(page(tenant)).content.decode().lower()
    client.post(page(tenant), {"action": "disconnect"})
    assert not Webhook.objects.get(teams=True).is_active


def test_a_bad_url_on_the_page_is_a_clear_error(tenant):
    response = tenant.client(tenant.admin).post(page(tenant), {"action": "connect", "url": "not a url"})
    assert response.status_code == 422 and "Enter a valid URL" in response.content.decode()
    assert not Webhook.objects.filter(teams=True).exists()


def test_only_admins_see_the_teams_page(tenant, stranger_tenant):
    assert tenant.client(tenant.member).get(page(tenant)).status_code == 403
    assert stranger_tenant.client(stranger_tenant.admin).get(page(tenant)).status_code == 404


def test_the_teams_webhook_stays_off_the_generic_webhook_pages(connected):
    hook = Webhook.objects.get(teams=True)
    client = connected.client(connected.admin)
    detail = reverse("escalations:webhook_detail", args=["acme", hook.pk])
    assert detail not in client.get(reverse("escalations:webhook_list", args=["acme"])).content.decode()
    assert client.get(detail).status_code == 404

"""Per-person channels: choices per kind (urgent kinds keep one), quiet hours in the organization's business hours,
the daily digest for low-severity kinds, RetryLater, and the Message-ID a redelivered email keeps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from escalations.models import Notification, NotificationPreference, NotificationSettings
from escalations.notify import fanout
from escalations.notify.channels import CHANNELS, RetryLater, retry_after_seconds
from escalations.notify.channels.email import message_id
from escalations.notify.daily_digest import send_daily_digests
from escalations.notify.fanout import Message, deliver_due, notify
from escalations.notify.services import notification_preferences_set
from governance.models import AuditEvent

# The tenant's organization: Europe/Berlin, open Monday to Friday 09:00-17:00 (08:00-16:00 UTC in November).
MONDAY_EVENING = datetime(2026, 11, 2, 20, 0, tzinfo=UTC)
TUESDAY_OPENING = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def tell(tenant, kind: str, key: str, at: datetime, who=None) -> None:
    notify(
        recipients=[who or tenant.member],
        message=Message(kind=kind, subject=f"{kind} {key}", body="Something happened.", url="/o/acme/"),
        dedup_key=f"test:{key}",
        now=at,
    )


def rows(tenant, kind: str) -> dict[str, Notification]:
    return {n.channel: n for n in Notification.objects.filter(recipient=tenant.member, kind=kind)}


# --- choices per kind --------------------------------------------------------------------------------------------


def test_an_urgent_kind_cannot_have_every_channel_switched_off(tenant):
    with pytest.raises(ValidationError, match="at least one channel"):
        notification_preferences_set(membership=tenant.member, off={("escalation", c) for c in CHANNELS})
    assert not NotificationPreference.objects.filter(membership=tenant.member).exists()


def test_a_non_urgent_kind_may_have_none(tenant):
    notification_preferences_set(membership=tenant.member, off={("resolved", c) for c in CHANNELS})
    tell(tenant, "resolved", "r1", MONDAY_EVENING)
    assert rows(tenant, "resolved") == {}


def test_the_form_refuses_silencing_escalations_and_keeps_what_was_saved(tenant):
    notification_preferences_set(membership=tenant.member, off={("resolved", "email")})
    client = tenant.client(tenant.member)
    url = reverse("escalations:notification_settings", args=["acme"])
    page = client.get(url).content.decode()
    form = {name: "on" for name in re.findall(r'name="(\w+__\w+)"', page) if not name.startswith("escalation__")}
    response = client.post(url, form)
    assert response.status_code == 422 and "is urgent: keep at least one channel" in response.content.decode()
    assert set(NotificationPreference.objects.filter(enabled=False).values_list("kind", "channel")) == {
        ("resolved", "email")
    }


def test_an_urgent_message_reaches_the_inbox_even_when_old_settings_silenced_it(tenant):
    for channel in CHANNELS:  # written before urgent kinds were protected
        NotificationPreference.objects.create(
            organization=tenant.org, membership=tenant.member, kind="escalation", channel=channel, enabled=False
        )
    tell(tenant, "escalation", "e1", MONDAY_EVENING)
    assert set(rows(tenant, "escalation")) == {"in_app"}


def unreachable_channel(name: str, *, fails_with: Exception | None = None, reach: set[int] | None = None):
    """A person channel as a plug-in (a Slack DM, say) that reaches only `reach` and whose sends raise `fails_with`."""

    def send(notification):
        if fails_with:
            raise fails_with

    channel = SimpleNamespace(NAME=name, DELIVERED_WHEN_WRITTEN=False, KEEPS_PAYLOAD=False, send=send)
    if reach is not None:
        channel.available_to = lambda members: set(members) & reach
    return channel


def test_a_channel_that_cannot_reach_a_member_writes_nothing_for_them(tenant, monkeypatch):
    monkeypatch.setitem(CHANNELS, "chat", unreachable_channel("chat", reach={tenant.lead.pk}))
    tell(tenant, "resolved", "r1", MONDAY_EVENING)
    tell(tenant, "resolved", "r2", MONDAY_EVENING, who=tenant.lead)
    assert set(rows(tenant, "resolved")) == {"in_app", "email"}
    assert Notification.objects.filter(recipient=tenant.lead, channel="chat").count() == 1


# --- quiet hours ---------------------------------------------------------------------------------------------------


def quiet(tenant, **fields) -> None:
    notification_preferences_set(membership=tenant.member, off=set(), **fields)


def test_quiet_hours_hold_what_can_wait_until_the_next_opening_and_the_inbox_gets_it_at_once(tenant, mailoutbox):
    quiet(tenant, quiet_hours=True)
    tell(tenant, "path_approved", "p1", MONDAY_EVENING)
    tell(tenant, "escalation", "e1", MONDAY_EVENING)
    approved = rows(tenant, "path_approved")
    assert approved["in_app"].delivered_at == MONDAY_EVENING
    assert approved["email"].next_attempt_at == TUESDAY_OPENING
    assert rows(tenant, "escalation")["email"].next_attempt_at == MONDAY_EVENING  # urgent: no waiting
    assert deliver_due(now=MONDAY_EVENING + MINUTE) == 1
    assert [m.subject for m in mailoutbox] == ["[Acme] escalation e1"]
    assert deliver_due(now=TUESDAY_OPENING) == 1


def test_inside_business_hours_quiet_hours_change_nothing(tenant):
    quiet(tenant, quiet_hours=True)
    tell(tenant, "path_approved", "p1", TUESDAY_OPENING + 2 * MINUTE)
    assert rows(tenant, "path_approved")["email"].next_attempt_at == TUESDAY_OPENING + 2 * MINUTE


def test_settings_changes_are_audited(tenant):
    quiet(tenant, quiet_hours=True, digest_kinds={"resolved"})
    event = AuditEvent.objects.get(verb="notification_preferences.updated")
    assert event.after == {"off": [], "quiet_hours": True, "digest": ["resolved"]}


# --- the daily digest ----------------------------------------------------------------------------------------------


def test_only_low_severity_kinds_go_in_the_digest(tenant):
    with pytest.raises(ValidationError, match="low-severity"):
        quiet(tenant, digest_kinds={"escalation"})
    assert not NotificationSettings.objects.exists()


def test_the_daily_digest_sends_held_items_once_a_day_when_business_hours_open(tenant, mailoutbox):
    quiet(tenant, digest_kinds={"resolved"})
    tell(tenant, "resolved", "r1", MONDAY_EVENING)
    tell(tenant, "resolved", "r2", MONDAY_EVENING + MINUTE)
    held = rows(tenant, "resolved")
    assert held["in_app"].delivered_at == MONDAY_EVENING
    assert held["email"].in_digest and held["email"].next_attempt_at is None
    assert deliver_due(now=MONDAY_EVENING + 2 * MINUTE) == 0  # never sent alone
    assert send_daily_digests(now=MONDAY_EVENING + 2 * MINUTE) == 0  # the day is closed
    assert send_daily_digests(now=TUESDAY_OPENING) == 1
    assert send_daily_digests(now=TUESDAY_OPENING) == 0  # a second beat: once per member and day
    digest = Notification.objects.get(kind="daily_digest")
    assert digest.dedup_key == f"daily_digest:{tenant.org.pk}:2026-11-03:{tenant.member.pk}"
    assert [i["subject"] for i in digest.payload["items"]] == ["resolved r1", "resolved r2"]
    assert Notification.objects.filter(kind="resolved", channel="email", delivered_at=TUESDAY_OPENING).count() == 2
    assert deliver_due(now=TUESDAY_OPENING + MINUTE) == 1
    [email] = mailoutbox
    assert email.subject == "[Acme] Your daily digest: 2 updates"
    html = email.alternatives[0][0]
    assert "resolved r1" in html and "Daily digest" in html and 'style="' in html
    # Held after today's digest: tomorrow's.
    tell(tenant, "resolved", "r3", TUESDAY_OPENING + 2 * MINUTE)
    assert send_daily_digests(now=TUESDAY_OPENING + 2 * MINUTE) == 0
    assert send_daily_digests(now=TUESDAY_OPENING + timedelta(days=1)) == 1


# --- retries -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "wait"),
    [(3600, timedelta(hours=1)), (1, timedelta(minutes=2))],  # the remote's wait, or the backoff when longer
)
def test_retry_later_waits_at_least_as_asked_and_counts_the_attempt(tenant, monkeypatch, seconds, wait):
    monkeypatch.setitem(CHANNELS, "chat", unreachable_channel("chat", fails_with=RetryLater(seconds, "rate limited")))
    tell(tenant, "escalation", "e1", MONDAY_EVENING)
    assert deliver_due(now=MONDAY_EVENING) == 1  # the email; the chat message waits
    chat = Notification.objects.get(channel="chat")
    assert chat.attempts == 1 and chat.next_attempt_at == MONDAY_EVENING + wait
    assert chat.error == "RetryLater: rate limited"


def test_retry_later_still_gives_up_after_the_last_attempt(tenant, monkeypatch):
    monkeypatch.setitem(CHANNELS, "chat", unreachable_channel("chat", fails_with=RetryLater(5)))
    tell(tenant, "escalation", "e1", MONDAY_EVENING)
    at = MONDAY_EVENING
    for _ in range(fanout.MAX_ATTEMPTS):
        deliver_due(now=at)
        at += timedelta(days=1)
    chat = Notification.objects.get(channel="chat")
    assert chat.attempts == fanout.MAX_ATTEMPTS and chat.next_attempt_at is None and chat.state == "failed"


@pytest.mark.parametrize(
    ("header", "seconds"), [("120", 120.0), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)]
)
def test_retry_after_reads_seconds_and_dates(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_an_email_carries_a_message_id_made_from_its_dedup_key(tenant, mailoutbox):
    tell(tenant, "escalation", "e1", MONDAY_EVENING)
    deliver_due(now=MONDAY_EVENING)
    email = Notification.objects.get(channel="email")
    assert mailoutbox[0].message()["Message-ID"] == message_id(email)
    assert message_id(email) != message_id(Notification.objects.get(channel="in_app"))

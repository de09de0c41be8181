"""A channel that keeps failing is flagged to the admins once per failing period, and the delivery log shows every
channel's messages with their state and last error in plain words; admins only, nothing of another organization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.urls import reverse

from escalations.models import Notification, WebhookDelivery
from escalations.notify.health import FAILURES_IN_A_ROW, failing_channels, flag_failing, plain_error
from tests.escalations.factories import NotificationFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def failed_emails(tenant, count: int, start: datetime, *, given_up: bool = False) -> None:
    for i in range(count):
        NotificationFactory(
            recipient=tenant.member,
            channel="email",
            kind="resolved",
            created_at=start + i * MINUTE,
            attempts=1,
            next_attempt_at=None if given_up else start + 10 * MINUTE,
            error="SMTPServerDisconnected: Connection unexpectedly closed",
        )


def flags(tenant) -> list[Notification]:
    return list(Notification.objects.filter(kind="channel_failing", recipient=tenant.admin, channel="in_app"))


def test_a_channel_failing_five_times_in_a_row_is_flagged_to_the_admins_once(tenant):
    failed_emails(tenant, FAILURES_IN_A_ROW - 1, T0)
    assert flag_failing(now=T0 + MINUTE) == 0 and not flags(tenant)
    failed_emails(tenant, 1, T0 + 10 * MINUTE)
    assert flag_failing(now=T0 + 11 * MINUTE) == 1
    assert flag_failing(now=T0 + 12 * MINUTE) == 1  # still failing, but the same period: told once
    [flag] = flags(tenant)
    assert flag.subject == "Email keeps failing" and "mail server did not accept" in flag.body
    assert flag.url == reverse("escalations:delivery_log", args=["acme"]) + "?channel=email"
    assert not Notification.objects.filter(kind="channel_failing", recipient=tenant.member).exists()


def test_a_new_failing_period_after_a_success_is_flagged_again(tenant):
    failed_emails(tenant, FAILURES_IN_A_ROW, T0)
    flag_failing(now=T0 + 10 * MINUTE)
    NotificationFactory(
        recipient=tenant.member, channel="email", created_at=T0 + 20 * MINUTE, attempts=1, delivered_at=T0
    )
    assert failing_channels(org=tenant.org) == []
    failed_emails(tenant, FAILURES_IN_A_ROW, T0 + 30 * MINUTE)
    flag_failing(now=T0 + 40 * MINUTE)
    assert len(flags(tenant)) == 2


def test_one_message_given_up_is_enough_to_flag(tenant):
    WebhookDelivery.objects.create(
        organization=tenant.org,
        webhook=tenant.webhook,
        event="workstream.opened",
        payload={},
        dedup_key="x",
        attempts=8,
        next_attempt_at=None,
        error="HTTP 503: down",
    )
    [failing] = failing_channels(org=tenant.org)
    assert failing.channel == f"webhook:{tenant.webhook.pk}" and failing.given_up == 1
    assert failing.problem == "The receiver had a server error (HTTP 503); retried with backoff."


def test_plain_words_for_the_usual_errors():
    assert plain_error("HTTP 429: slow down").startswith("The receiver is rate-limiting us")
    assert plain_error("Timed out (ReadTimeout)") == "No answer within the time limit."
    assert plain_error("HTTP 404: gone").startswith("Nothing at that address any more")
    assert plain_error("Something new") == "Something new"


# --- the page -----------------------------------------------------------------------------------------------------


def log_url(**query) -> str:
    return reverse("escalations:delivery_log", args=["acme"]) + ("?" + "&".join(f"{k}={v}" for k, v in query.items()))


def test_the_log_shows_a_banner_states_attempts_and_plain_errors(tenant, django_assert_max_num_queries):
    failed_emails(tenant, FAILURES_IN_A_ROW, T0, given_up=True)
    NotificationFactory(
        recipient=tenant.member,
        channel="email",
        subject="All good",
        attempts=1,
        created_at=T0 - MINUTE,
        delivered_at=T0,
    )
    client = tenant.client(tenant.admin)
    with django_assert_max_num_queries(30):
        html = client.get(log_url(channel="email")).content.decode()
    assert "Email keeps failing" in html and "given up" in html
    assert html.count("The mail server did not accept the message.") >= FAILURES_IN_A_ROW
    assert "All good" in html and "Delivered" in html
    html = client.get(log_url(channel="email", state="delivered")).content.decode()
    assert "All good" in html and "Failed" not in html.split("<tbody>")[1]
    webhook_tab = client.get(log_url(channel=f"webhook:{tenant.webhook.pk}")).content.decode()
    assert "Nothing on this channel yet" in webhook_tab


def test_the_log_lists_no_in_app_rows_and_refuses_unknown_filters(tenant):
    client = tenant.client(tenant.admin)
    assert client.get(log_url(channel="in_app")).status_code == 422
    assert client.get(log_url(channel="email", state="lost")).status_code == 422


def test_the_log_is_for_admins_and_never_shows_another_organization(tenant, stranger_tenant):
    failed_emails(stranger_tenant, FAILURES_IN_A_ROW, T0)
    assert tenant.client(tenant.member).get(log_url()).status_code == 403
    client = tenant.client(tenant.admin)
    html = client.get(log_url(channel="email")).content.decode()
    assert "Email keeps failing" not in html and "SMTP" not in html
    # Another organization's webhook is no choice here.
    assert client.get(log_url(channel=f"webhook:{stranger_tenant.webhook.pk}")).status_code == 422
    assert stranger_tenant.client(stranger_tenant.admin).get(log_url()).status_code == 404

"""Scheduled reports: the pages that manage them (admins and executives of the organization only), the sweep that
sends each period once at its local time across a DST change, even under two beats, and the send log."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core import mail
from django.db import connection
from django.urls import reverse
from openpyxl import load_workbook
from pptx import Presentation

from config.celery import app as celery_app
from escalations.decisions import review_sessions
from escalations.decisions.calendar import review_session_schedule
from escalations.models import ReportSend, ReportSubscription
from escalations.reporting.subscriptions import send_reports, subscription_save
from escalations.tasks import send_reports as send_reports_task
from governance.models import AuditEvent, Organization
from tests.conftest import Tenant, make_tenant, worker_settled
from tests.escalations.test_celery import wait_until

HOUR = timedelta(hours=1)


def _berlin(tenant: Tenant) -> None:
    Organization.objects.filter(pk=tenant.org.pk).update(timezone="Europe/Berlin")
    tenant.org.refresh_from_db()


def _subscribe(tenant: Tenant, **fields) -> ReportSubscription:
    sub = ReportSubscription(
        organization=tenant.org,
        name=fields.pop("name", "Monday scorecard"),
        content=fields.pop("content", ReportSubscription.Content.SCORECARD),
        format=fields.pop("format", ReportSubscription.Format.XLSX),
        emails=fields.pop("emails", ["chair@board.test"]),
        **fields,
    )
    return subscription_save(sub=sub, by=tenant.executive, members=[tenant.member])


def test_a_weekly_report_goes_once_per_week_at_0800_berlin_across_the_dst_change(tenant):
    _berlin(tenant)
    with time_machine.travel(datetime(2026, 3, 20, 12, tzinfo=UTC), tick=False):
        sub = _subscribe(tenant, weekday=0, send_time=time(8))
    # Every hour from Friday 20 March to Wednesday 1 April; the clocks go forward on Sunday 29 March.
    first_seen: dict[str, datetime] = {}
    now = datetime(2026, 3, 20, 12, 30, tzinfo=UTC)
    while now < datetime(2026, 4, 1, tzinfo=UTC):
        with time_machine.travel(now, tick=False):
            if send_reports(now=now):
                period = ReportSend.objects.latest("claimed_at").period
                first_seen.setdefault(period, now)
        now += HOUR / 2
    # 08:00 CET is 07:00 UTC on 23 March; 08:00 CEST is 06:00 UTC on 30 March.
    assert first_seen == {
        "2026-W13": datetime(2026, 3, 23, 7, 0, tzinfo=UTC),
        "2026-W14": datetime(2026, 3, 30, 6, 0, tzinfo=UTC),
    }
    sends = list(ReportSend.objects.filter(subscription=sub).order_by("due_at"))
    assert [(s.period, s.recipients, s.error) for s in sends] == [("2026-W13", 2, ""), ("2026-W14", 2, "")]
    assert sorted(m.to[0] for m in mail.outbox) == sorted(["chair@board.test", tenant.member.user.email] * 2)
    name, body, mimetype = mail.outbox[0].attachments[0]
    assert name.endswith(".xlsx") and mimetype.startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(body)).active
    assert sheet["A1"].value == "Key" and sheet["A2"].value == "ops.throughput"


def test_two_beats_at_the_same_moment_send_once(tenant):
    with time_machine.travel(datetime(2026, 12, 1, tzinfo=UTC), tick=False):
        _subscribe(tenant, cadence=ReportSubscription.Cadence.MONTHLY, send_time=time(8))
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)  # Tuesday 1 December, 08:00 in the tenant's zone has passed
    assert send_reports(now=at) == 1
    assert send_reports(now=at) == 0
    assert send_reports(now=at + timedelta(days=3)) == 0  # the same month
    assert ReportSend.objects.get().period == "2026-12" and len(mail.outbox) == 2


def test_a_subscription_made_after_this_weeks_time_starts_next_week(tenant):
    with time_machine.travel(datetime(2026, 12, 8, 12, tzinfo=UTC), tick=False):  # a Tuesday
        _subscribe(tenant, weekday=0, send_time=time(8))
        assert send_reports() == 0
    with time_machine.travel(datetime(2026, 12, 14, 9, tzinfo=UTC), tick=False):
        assert send_reports() == 1


def test_the_pack_goes_hours_before_each_review_session_as_a_deck(tenant):
    session = review_sessions.review_session_start(org=tenant.org, by=tenant.executive, title="Q4 review")
    starts = datetime(2026, 12, 10, 9, tzinfo=UTC)
    with time_machine.travel(datetime(2026, 12, 7, 9, tzinfo=UTC), tick=False):
        review_session_schedule(session=session, by=tenant.executive, at=starts)
        _subscribe(
            tenant,
            name="Pack before reviews",
            content=ReportSubscription.Content.PACK,
            format=ReportSubscription.Format.PPTX,
            cadence=ReportSubscription.Cadence.BEFORE_REVIEW,
            hours_before=24,
        )
    assert send_reports(now=starts - 25 * HOUR) == 0
    assert send_reports(now=starts - 24 * HOUR) == 1
    assert send_reports(now=starts - 2 * HOUR) == 0
    name, body, _ = mail.outbox[0].attachments[0]
    assert name.endswith(".pptx")
    assert Presentation(io.BytesIO(body)).slides[0].shapes.title.text == "Steering pack: Q4 review"


def test_a_failed_send_is_logged_and_not_retried(tenant):
    with time_machine.travel(datetime(2026, 12, 1, tzinfo=UTC), tick=False):
        _subscribe(tenant, content=ReportSubscription.Content.PACK, format=ReportSubscription.Format.PDF)
    assert send_reports(now=datetime(2026, 12, 7, 9, tzinfo=UTC)) == 1
    send = ReportSend.objects.get()
    assert send.sent_at is None and "No review session yet" in send.error
    assert send_reports(now=datetime(2026, 12, 7, 10, tzinfo=UTC)) == 0


# --- the pages ----------------------------------------------------------------------------------------------------


def test_an_executive_creates_edits_and_deletes_a_subscription(tenant):
    client = tenant.client(tenant.executive)
    create = reverse("escalations:subscription_create", args=[tenant.org.slug])
    response = client.post(
        create,
        {
            "name": "Board pack",
            "content": "pack",
            "format": "pptx",
            "cadence": "weekly",
            "weekday": "0",
            "send_time": "08:00",
            "hours_before": "24",
            "members": [tenant.member.pk],
            "emails": "Chair@Board.test\nsecretary@board.test",
        },
    )
    assert response.status_code == 302
    sub = ReportSubscription.objects.get()
    assert sub.emails == ["chair@board.test", "secretary@board.test"] and list(sub.members.all()) == [tenant.member]
    page = client.get(reverse("escalations:subscription_list", args=[tenant.org.slug])).content.decode()
    assert "Board pack" in page and "Every Monday at 08:00" in page
    edit = reverse("escalations:subscription_edit", args=[tenant.org.slug, sub.pk])
    assert "secretary@board.test" in client.get(edit).content.decode()
    response = client.post(
        edit,
        {"name": "Board pack", "content": "pack", "format": "pdf", "cadence": "monthly", "weekday": "0",
         "send_time": "07:30", "hours_before": "24", "emails": "chair@board.test"},
    )  # fmt: skip
    sub.refresh_from_db()
    assert (sub.format, sub.cadence, sub.send_time, sub.members.count()) == ("pdf", "monthly", time(7, 30), 0)
    client.post(reverse("escalations:subscription_delete", args=[tenant.org.slug, sub.pk]))
    assert not ReportSubscription.objects.exists()
    verbs = list(AuditEvent.objects.filter(verb__startswith="report_subscription.").values_list("verb", flat=True))
    assert sorted(verbs) == [
        "report_subscription.created",
        "report_subscription.deleted",
        "report_subscription.updated",
    ]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"content": "scorecard", "format": "pdf"}, "format", "A scorecard is sent as Excel"),
        ({"emails": "not-an-address"}, "emails", "is not an email address"),
        ({"emails": ""}, "members", "at least one member or email address"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(tenant, data, field, message):
    base = {"name": "R", "content": "pack", "format": "pdf", "cadence": "weekly", "weekday": "0",
            "send_time": "08:00", "hours_before": "24", "emails": "a@b.test"}  # fmt: skip
    response = tenant.client(tenant.admin).post(
        reverse("escalations:subscription_create", args=[tenant.org.slug]), base | data
    )
    assert response.status_code == 200 and message in response.content.decode()
    assert field in response.context["form"].errors and not ReportSubscription.objects.exists()


def test_members_may_not_manage_reports(tenant):
    response = tenant.client(tenant.member).get(reverse("escalations:subscription_list", args=[tenant.org.slug]))
    assert response.status_code == 403


def test_a_stranger_gets_404_for_another_organizations_subscriptions(tenant, stranger_tenant):
    sub = _subscribe(tenant)
    client = stranger_tenant.client(stranger_tenant.admin)
    for url in (
        reverse("escalations:subscription_list", args=[tenant.org.slug]),
        reverse("escalations:subscription_edit", args=[tenant.org.slug, sub.pk]),
        reverse("escalations:subscription_edit", args=[stranger_tenant.org.slug, sub.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert (
        client.post(reverse("escalations:subscription_delete", args=[stranger_tenant.org.slug, sub.pk])).status_code
        == 404
    )
    assert ReportSubscription.objects.filter(pk=sub.pk).exists()


def test_a_foreign_member_cannot_be_a_recipient(tenant, stranger_tenant):
    response = tenant.client(tenant.admin).post(
        reverse("escalations:subscription_create", args=[tenant.org.slug]),
        {"name": "R", "content": "pack", "format": "pdf", "cadence": "weekly", "weekday": "0",
         "send_time": "08:00", "hours_before": "24", "members": [stranger_tenant.member.pk]},
    )  # fmt: skip
    assert response.status_code == 200 and "members" in response.context["form"].errors


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis://") or connection.vendor != "postgresql",
    reason="needs the real broker (Redis) and PostgreSQL",
)
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_through_a_real_worker_at_once_send_each_period_once():
    tenant = make_tenant("initech")
    with time_machine.travel(datetime(2026, 12, 1, tzinfo=UTC), tick=False):
        _subscribe(tenant, cadence=ReportSubscription.Cadence.MONTHLY)
    mail.outbox.clear()  # the tenant's invitation
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"):
        send_reports_task.delay(), send_reports_task.delay()
        wait_until(lambda: ReportSend.objects.exclude(sent_at=None).exists(), 120, "the report")
        worker_settled()
    assert ReportSend.objects.count() == 1 and len(mail.outbox) == 2

"""A review session on the attendees' calendars: the invitation parses as iCalendar (REQUEST, UID, SEQUENCE,
ORGANIZER, ATTENDEE, agenda link, the pack attached), moving it keeps the UID and raises SEQUENCE, cancelling
sends METHOD:CANCEL; the mail goes out once the change is committed, through the task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from icalendar import Calendar

from escalations.decisions import calendar, review_sessions
from escalations.models import ReviewSession
from escalations.tasks import send_session_invitation
from governance.models import AuditEvent

NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)
MEETS = datetime(2026, 12, 10, 9, tzinfo=UTC)


@pytest.fixture
def session(tenant):
    with time_machine.travel(NOW, tick=False):
        yield review_sessions.review_session_start(
            org=tenant.org, by=tenant.executive, title="December steering", attendees=[tenant.member]
        )


def _event(ics: bytes):
    cal = Calendar.from_ical(ics)
    (event,) = cal.walk("VEVENT")
    return cal, event


def _deliver(callbacks) -> None:
    """Runs what the commit queued: the task, by name, as the worker would."""
    (callback,) = callbacks
    with pytest.MonkeyPatch.context() as mp:
        sent = []
        mp.setattr("celery.current_app.send_task", lambda name, args: sent.append((name, args)))
        callback()
    ((name, args),) = sent
    assert name == "escalations.tasks.send_session_invitation"
    send_session_invitation.apply(args=args).get()


def test_scheduling_sends_an_invitation_that_parses(tenant, session, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks() as callbacks:
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
    _deliver(callbacks)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([tenant.executive.user.email, tenant.member.user.email])
    message = mail.outbox[0]
    assert message.subject.startswith("Invitation: December steering")
    (ics_name, ics, ics_type), (pdf_name, pdf, pdf_type) = message.attachments
    assert ics_type.startswith("text/calendar; method=REQUEST") and pdf_type == "application/pdf"
    assert pdf[:5] == b"%PDF-"
    cal, event = _event(ics)
    assert cal["METHOD"] == "REQUEST" and event["SEQUENCE"] == 0
    assert event.decoded("DTSTART") == MEETS and event.decoded("DTEND") == MEETS + timedelta(hours=1)
    assert str(event["SUMMARY"]) == "December steering"
    assert str(event["ORGANIZER"]) == f"mailto:{tenant.executive.user.email}"
    attendees = sorted(str(a) for a in event["ATTENDEE"])
    assert attendees == sorted(f"mailto:{m.user.email}" for m in (tenant.executive, tenant.member))
    agenda = reverse("escalations:review_session_detail", args=[tenant.org.slug, session.pk])
    assert str(event["URL"]).endswith(agenda) and agenda in str(event["DESCRIPTION"])
    assert AuditEvent.objects.filter(verb="review_session.scheduled").count() == 1


def test_moving_the_meeting_keeps_the_uid_and_raises_the_sequence(tenant, session, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
        first = _event(calendar.invitation(ReviewSession.objects.get(pk=session.pk), calendar.REQUEST))[1]
        with django_capture_on_commit_callbacks() as callbacks:
            calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS + timedelta(hours=2))
    _deliver(callbacks)
    cal, moved = _event(mail.outbox[0].attachments[0][1])
    assert mail.outbox[0].subject.startswith("Updated: December steering")
    assert moved["UID"] == first["UID"] and moved["SEQUENCE"] == first["SEQUENCE"] + 1 == 1
    assert moved.decoded("DTSTART") == MEETS + timedelta(hours=2)


def test_the_same_time_again_sends_nothing(tenant, session, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
        with django_capture_on_commit_callbacks() as callbacks:
            calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
    assert callbacks == [] and ReviewSession.objects.get(pk=session.pk).calendar_sequence == 0


def test_cancelling_sends_method_cancel_and_closes_the_session(tenant, session, django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
        uid = _event(calendar.invitation(ReviewSession.objects.get(pk=session.pk), calendar.REQUEST))[1]["UID"]
        with django_capture_on_commit_callbacks() as callbacks:
            calendar.review_session_cancel(session=session, by=tenant.executive)
    _deliver(callbacks)
    message = mail.outbox[0]
    ((name, ics, mimetype),) = message.attachments  # no pack for a meeting that will not take place
    assert mimetype.startswith("text/calendar; method=CANCEL")
    cal, event = _event(ics)
    assert cal["METHOD"] == "CANCEL" and event["UID"] == uid and event["SEQUENCE"] == 1
    assert str(event["STATUS"]) == "CANCELLED"
    session.refresh_from_db()
    assert session.cancelled_at and not session.is_open


def test_an_older_queued_invitation_is_dropped_for_the_newer_one(tenant, session):
    with time_machine.travel(NOW, tick=False):
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS)
        calendar.review_session_schedule(session=session, by=tenant.executive, at=MEETS + timedelta(days=1))
    assert send_session_invitation.apply(args=[tenant.org.pk, session.pk, "REQUEST", 0]).get() == {"sent": 0}
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("at", "minutes", "message"),
    [(NOW - timedelta(hours=1), 60, "in the future"), (MEETS, 5, "between 15 minutes and 8 hours")],
)
def test_bad_times_are_refused(tenant, session, at, minutes, message):
    with time_machine.travel(NOW, tick=False), pytest.raises(ValidationError, match=message):
        calendar.review_session_schedule(
            session=session, by=tenant.executive, at=at, duration=timedelta(minutes=minutes)
        )


def test_only_deciders_schedule_and_a_stranger_gets_404(tenant, stranger_tenant, session):
    url = reverse("escalations:review_session_schedule", args=[tenant.org.slug, session.pk])
    data = {"scheduled_for": "2027-01-05T09:00", "minutes": "60"}
    assert tenant.client(tenant.member).post(url, data).status_code == 403
    stranger = stranger_tenant.client(stranger_tenant.executive)
    assert stranger.post(url, data).status_code == 404
    foreign = reverse("escalations:review_session_schedule", args=[stranger_tenant.org.slug, session.pk])
    assert stranger.post(foreign, data).status_code == 404
    cancel = reverse("escalations:review_session_cancel", args=[stranger_tenant.org.slug, session.pk])
    assert stranger.post(cancel).status_code == 404
    session.refresh_from_db()
    assert session.scheduled_for is None and session.is_open


def test_the_agenda_page_schedules_in_the_organizations_zone(tenant, session):
    url = reverse("escalations:review_session_schedule", args=[tenant.org.slug, session.pk])
    response = tenant.client(tenant.executive).post(url, {"scheduled_for": "2027-01-05T09:00", "minutes": "90"})
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.scheduled_for == datetime(2027, 1, 5, 8, tzinfo=UTC)  # 09:00 in Berlin
    assert session.duration == timedelta(minutes=90)

"""A review session on its attendees' calendars: an iCalendar invitation (RFC 5545/5546, METHOD:REQUEST) with the
agenda link and the draft steering pack attached, sent when the executive sets the meeting's time; the same event
again (same UID, higher SEQUENCE) when the time changes; METHOD:CANCEL when the session is cancelled.

Calendars match the event by UID and keep the highest SEQUENCE, so the UID is derived from the session alone and
the sequence lives on the session (`calendar_sequence`), raised in the same transaction as the change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parseaddr

from celery import current_app
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from escalations.decisions import selectors
from escalations.decisions.services import may_decide
from escalations.models import ReviewSession
from governance.models import Membership
from governance.services.audit import audit_log

REQUEST, CANCEL = "REQUEST", "CANCEL"


def event_uid(session: ReviewSession) -> str:
    host = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "steerco"
    return f"review-session-{session.pk}-{session.organization.slug}@{host}"


def agenda_url(session: ReviewSession) -> str:
    return settings.SITE_URL + reverse(
        "escalations:review_session_detail", args=[session.organization.slug, session.pk]
    )


def invitation(session: ReviewSession, method: str, *, now: datetime | None = None) -> bytes:
    """The session as a one-event VCALENDAR for `method` (REQUEST or CANCEL)."""
    from icalendar import Calendar, Event, vCalAddress, vText

    now = now or timezone.now()
    cal = Calendar()
    cal.add("prodid", "-//Steerco//Review sessions//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    event = Event()
    event.add("uid", event_uid(session))
    event.add("sequence", session.calendar_sequence)
    event.add("dtstamp", now)
    event.add("dtstart", session.scheduled_for)
    event.add("dtend", session.scheduled_for + session.duration)
    event.add("summary", session.title)
    url = agenda_url(session)
    event.add("url", url)
    event.add("description", f"Agenda and decisions: {url}\nThe draft steering pack is attached.")
    event.add("status", "CANCELLED" if method == CANCEL else "CONFIRMED")
    organizer = vCalAddress(f"mailto:{session.started_by.email}")
    organizer.params["cn"] = vText(session.started_by.name)
    event.add("organizer", organizer)
    for m in selectors.session_attendees(session):
        attendee = vCalAddress(f"mailto:{m.user.email}")
        attendee.params.update({"cn": vText(m.user.name), "role": "REQ-PARTICIPANT", "partstat": "NEEDS-ACTION"})
        event.add("attendee", attendee)
    cal.add_component(event)
    return cal.to_ical()


def _check(session: ReviewSession, by: Membership) -> ReviewSession:
    session = ReviewSession.objects.select_for_update().select_related("organization", "started_by").get(pk=session.pk)
    if not may_decide(by) or by.organization_id != session.organization_id:
        raise PermissionDenied("Only executives and admins run a review.")
    if not session.is_open:
        raise ValidationError("This review session is closed: it is on nobody's calendar any more.")
    return session


@transaction.atomic
def review_session_schedule(
    *, session: ReviewSession, by: Membership, at: datetime, duration: timedelta = timedelta(hours=1)
) -> ReviewSession:
    """Sets or moves the meeting: the attendees get the invitation, or its update, once the change is committed."""
    session = _check(session, by)
    if at <= timezone.now():
        raise ValidationError({"scheduled_for": "Pick a time in the future."})
    if not timedelta(minutes=15) <= duration <= timedelta(hours=8):
        raise ValidationError({"duration": "A review lasts between 15 minutes and 8 hours."})
    if (session.scheduled_for, session.duration) == (at, duration):
        return session  # nothing changed: no second invitation
    before = session.scheduled_for
    if before is not None:
        session.calendar_sequence += 1  # an update: calendars replace the event they hold with this one
    session.scheduled_for, session.duration = at, duration
    session.save(update_fields=["scheduled_for", "duration", "calendar_sequence"])
    audit_log(
        org=session.organization,
        actor=by.user,
        verb="review_session.scheduled",
        obj=session,
        before={"scheduled_for": before.isoformat() if before else None},
        after={"scheduled_for": at.isoformat(), "minutes": int(duration.total_seconds() // 60)},
    )
    _send_on_commit(session, REQUEST)
    return session


@transaction.atomic
def review_session_cancel(*, session: ReviewSession, by: Membership) -> ReviewSession:
    """Calls the meeting off: the session closes without minutes, the attendees get the cancellation."""
    session = _check(session, by)
    now = timezone.now()
    session.cancelled_at = session.closed_at = now
    session.closed_by = by.user
    fields = ["cancelled_at", "closed_at", "closed_by"]
    if session.scheduled_for is not None:
        session.calendar_sequence += 1
        fields.append("calendar_sequence")
    session.save(update_fields=fields)
    audit_log(org=session.organization, actor=by.user, verb="review_session.cancelled", obj=session)
    if session.scheduled_for is not None:  # it was on calendars: take it off
        _send_on_commit(session, CANCEL)
    return session


def _send_on_commit(session: ReviewSession, method: str) -> None:
    # By name: the tasks module imports the services, not the other way round.
    args = [session.organization_id, session.pk, method, session.calendar_sequence]
    transaction.on_commit(lambda: current_app.send_task("escalations.tasks.send_session_invitation", args=args))


def send_invitation(*, session: ReviewSession, method: str, sequence: int) -> int:
    """Mails the invitation (or cancellation) to every attendee with an address; returns how many. A message queued
    for an older sequence is dropped: a newer one is on its way."""
    if session.calendar_sequence != sequence or session.scheduled_for is None:
        return 0
    from escalations.decisions.pack import render_pack

    ics = invitation(session, method)
    local = timezone.localtime(session.scheduled_for, session.organization.tzinfo)
    verb = "Cancelled" if method == CANCEL else ("Invitation" if sequence == 0 else "Updated")
    subject = f"{verb}: {session.title}, {local:%a %d %b %Y %H:%M}"
    sent = 0
    for m in selectors.session_attendees(session):
        if not m.user.email:
            continue
        message = EmailMessage(subject, f"{session.title}\n{agenda_url(session)}\n", to=[m.user.email])
        # text/calendar with the method is what makes mail programs show Accept/Decline, not a plain attachment.
        message.attach("invite.ics", ics, f"text/calendar; method={method}; charset=utf-8")
        if method == REQUEST:  # the pack as this attendee may see it
            pdf = render_pack(session=session, viewer=m)
            message.attach(f"steering-pack-{session.organization.slug}.pdf", pdf, "application/pdf")
        message.send()
        sent += 1
    return sent

"""Review sessions: an executive starts one, records who attends, takes decisions in it and closes it into
minutes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations.decisions.services import may_decide
from escalations.models import (
    ReviewAttendee,
    ReviewSession,
)
from governance.models import Membership, Organization
from governance.services.audit import audit_log


def _attendees(org: Organization, people: Iterable[Membership]) -> list[Membership]:
    chosen = {m.pk: m for m in people}
    if any(m.organization_id != org.pk or not m.is_active for m in chosen.values()):
        raise ValidationError({"attendees": "Attendees must be active members of this organization."})
    return list(chosen.values())


def _started(org: Organization, now: datetime) -> str:
    local = timezone.localtime(now, org.tzinfo)
    return f"{local.day} {local:%b %Y, %H:%M}"


def _unique_title(org: Organization, title: str) -> str:
    """Titles tell sessions apart in lists, links and steering packs: a title taken already (two reviews in one
    minute, or the same title typed twice) gets the next number, "(2)", "(3)"..."""
    taken = set(ReviewSession.objects.for_org(org).filter(title__startswith=title).values_list("title", flat=True))
    n = 1
    while (candidate := title if n == 1 else f"{title} ({n})") in taken:
        n += 1
    return candidate


@transaction.atomic
def review_session_start(
    *, org: Organization, by: Membership, title: str = "", attendees: Iterable[Membership] = ()
) -> ReviewSession:
    """One review runs at a time; whoever starts it attends it."""
    if not may_decide(by) or by.organization_id != org.pk:
        raise PermissionDenied("Only executives and admins run a review.")
    people = _attendees(org, [by, *attendees])
    running = ReviewSession.objects.for_org(org).filter(closed_at=None).first()
    if running is not None:
        raise ValidationError(f"{running.title} is in progress: close it before starting another review.")
    now = timezone.now()
    try:
        with transaction.atomic():
            session = ReviewSession.objects.create(
                organization=org,
                title=_unique_title(org, title.strip() or f"Steering review {_started(org, now)}"),
                started_by=by.user,
                started_at=now,
            )
    except IntegrityError:  # another executive started one at the same moment
        raise ValidationError("Another review was started at the same moment: join it instead.") from None
    ReviewAttendee.objects.bulk_create(ReviewAttendee(organization=org, session=session, membership=m) for m in people)
    audit_log(
        org=org,
        actor=by.user,
        verb="review_session.started",
        obj=session,
        after={"title": session.title, "attendees": sorted(m.user.name for m in people)},
    )
    return session


@transaction.atomic
def review_session_set_attendees(
    *, session: ReviewSession, by: Membership, attendees: Iterable[Membership]
) -> ReviewSession:
    session = ReviewSession.objects.select_for_update().select_related("organization").get(pk=session.pk)
    if not may_decide(by) or by.organization_id != session.organization_id:
        raise PermissionDenied("Only executives and admins run a review.")
    if not session.is_open:
        raise ValidationError("This review session is closed: its minutes are final.")
    people = _attendees(session.organization, attendees)
    if not people:
        raise ValidationError({"attendees": "A review has at least one attendee."})
    before = sorted(session.attendees.values_list("user__name", flat=True))
    session.attendance.all().delete()
    ReviewAttendee.objects.bulk_create(
        ReviewAttendee(organization_id=session.organization_id, session=session, membership=m) for m in people
    )
    after = sorted(m.user.name for m in people)
    if after != before:
        audit_log(
            org=session.organization,
            actor=by.user,
            verb="review_session.attendees_set",
            obj=session,
            before={"attendees": before},
            after={"attendees": after},
        )
    return session


@transaction.atomic
def review_session_close(*, session: ReviewSession, by: Membership, summary: str = "") -> ReviewSession:
    """Its decisions are its minutes from now on: no decision joins a closed session."""
    session = ReviewSession.objects.select_for_update().select_related("organization").get(pk=session.pk)
    if not may_decide(by) or by.organization_id != session.organization_id:
        raise PermissionDenied("Only executives and admins run a review.")
    if not session.is_open:
        raise ValidationError("This review session is closed already.")
    session.closed_at, session.closed_by, session.summary = timezone.now(), by.user, summary.strip()
    session.save(update_fields=["closed_at", "closed_by", "summary"])
    audit_log(
        org=session.organization,
        actor=by.user,
        verb="review_session.closed",
        obj=session,
        after={"decisions": session.decisions.count(), "summary": session.summary},
    )
    return session

"""Scheduled reports: an admin or executive subscribes members (and addresses outside the organization) to a
scorecard or the steering pack, as PDF, PowerPoint or Excel, weekly, monthly on the first working day, or before
each review session (report_schedule says when each is due).

Once per subscription and period, guaranteed by the database: the send-log row (ReportSend, unique on subscription
and period) is inserted before anything is rendered, and only the sweep whose insert succeeds sends. Two beats, a
redelivered task or a sweep that runs late therefore send a period's report at most once; a worker that dies between
the claim and the mail leaves the row without `sent_at`, visible on the subscriptions page, and the period is not
sent twice. Each member gets the report as they may see it (their KPIs); outside addresses get the subscription
creator's view, as if the creator had forwarded it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from escalations.decisions.pack_files import PACK_FORMATS, render_pack_as
from escalations.models import ReportSend, ReportSubscription, ReviewSession
from escalations.reporting import report_schedule
from governance import exports
from governance.hours import business_hours
from governance.models import Membership, Organization, Role
from governance.services.audit import audit_log
from scorecards.selectors import SCORECARD_COLUMNS, kpi_list, scorecard_table

logger = logging.getLogger(__name__)
MANAGERS = (Role.ADMIN, Role.EXECUTIVE)
Cadence = ReportSubscription.Cadence


def _may_manage(by: Membership, org: Organization) -> None:
    if by.organization_id != org.pk or by.role not in MANAGERS or not by.is_active:
        raise PermissionDenied("Only admins and executives manage scheduled reports.")


def _validate(sub: ReportSubscription, members: list[Membership]) -> None:
    if sub.content == ReportSubscription.Content.SCORECARD and sub.format != ReportSubscription.Format.XLSX:
        raise ValidationError({"format": "A scorecard is sent as Excel; the steering pack also as PDF or PowerPoint."})
    if sub.scorecard is not None and sub.scorecard.organization_id != sub.organization_id:
        raise ValidationError({"scorecard": "Pick a scorecard of this organization."})
    if any(m.organization_id != sub.organization_id or not m.is_active for m in members):
        raise ValidationError({"members": "Recipients must be active members of this organization."})
    if not members and not sub.emails:
        raise ValidationError({"members": "Choose at least one member or email address."})
    if not 0 <= sub.weekday <= 6:
        raise ValidationError({"weekday": "Pick a day of the week."})
    if sub.cadence == Cadence.BEFORE_REVIEW and not 1 <= sub.hours_before <= 168:
        raise ValidationError({"hours_before": "Between 1 and 168 hours before the session."})


def _fields(sub: ReportSubscription, members: list[Membership]) -> dict:
    return {
        "name": sub.name,
        "content": sub.content,
        "scorecard": sub.scorecard.name if sub.scorecard else None,
        "format": sub.format,
        "cadence": sub.cadence,
        "weekday": sub.weekday,
        "send_time": sub.send_time.strftime("%H:%M"),
        "hours_before": sub.hours_before,
        "members": sorted(m.user.name for m in members),
        "emails": sorted(sub.emails),
    }


@transaction.atomic
def subscription_save(*, sub: ReportSubscription, by: Membership, members: list[Membership]) -> ReportSubscription:
    """Creates `sub` (no pk yet) or saves the edited one, with its member recipients; audited."""
    _may_manage(by, sub.organization)
    _validate(sub, members)
    before = None
    if sub.pk:
        old = ReportSubscription.objects.for_org(sub.organization).select_related("scorecard").get(pk=sub.pk)
        before = _fields(old, list(old.members.select_related("user")))
    else:
        sub.created_by = by.user
    sub.save()
    sub.members.set(members)
    after = _fields(sub, members)
    verb = "report_subscription.updated" if before else "report_subscription.created"
    if after != before:
        audit_log(org=sub.organization, actor=by.user, verb=verb, obj=sub, before=before, after=after)
    return sub


@transaction.atomic
def subscription_delete(*, sub: ReportSubscription, by: Membership) -> None:
    _may_manage(by, sub.organization)
    audit_log(
        org=sub.organization, actor=by.user, verb="report_subscription.deleted", obj=sub, before={"name": sub.name}
    )
    sub.delete()


# --- the sweep ------------------------------------------------------------------------------------------------------


def due(
    sub: ReportSubscription, now: datetime, sessions: list[ReviewSession]
) -> list[tuple[report_schedule.Due, ReviewSession | None]]:
    """What `sub` owes at `now`: a period due since it was created, with the review session it is about, if any."""
    hours = business_hours(sub.organization)
    if sub.cadence == Cadence.BEFORE_REVIEW:
        owed = [
            (d, s)
            for s in sessions
            if (d := report_schedule.review_due(s.pk, s.scheduled_for, sub.hours_before, now)) is not None
        ]
    elif sub.cadence == Cadence.MONTHLY:
        owed = [(report_schedule.monthly_due(sub.send_time, hours, now), None)]
    else:
        owed = [(report_schedule.weekly_due(sub.weekday, sub.send_time, hours, now), None)]
    # A subscription made on Tuesday does not send the Monday report it was not there for.
    return [(d, s) for d, s in owed if d.at >= sub.created_at]


def send_reports(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Sends every report due now; returns how many periods this sweep claimed and sent."""
    now = now or timezone.now()
    subs = ReportSubscription.objects.select_related("organization", "scorecard", "created_by")
    if org_id is not None:
        subs = subs.filter(organization_id=org_id)
    subs = list(subs.order_by("pk"))
    upcoming: dict[int, list[ReviewSession]] = {}
    if any(s.cadence == Cadence.BEFORE_REVIEW for s in subs):
        for session in ReviewSession.objects.filter(
            organization_id__in={s.organization_id for s in subs},
            closed_at=None,
            scheduled_for__isnull=False,
        ).select_related("organization"):
            upcoming.setdefault(session.organization_id, []).append(session)
    sent = 0
    for sub in subs:
        sessions = upcoming.get(sub.organization_id, [])
        if sub.cadence == Cadence.BEFORE_REVIEW and not sessions:
            continue
        for period, session in due(sub, now, sessions):
            send = _claim(sub, period)
            if send is not None:
                _send(send, sub, session, now)
                sent += 1
    return sent


def _claim(sub: ReportSubscription, period: report_schedule.Due) -> ReportSend | None:
    try:
        with transaction.atomic():
            return ReportSend.objects.create(
                organization_id=sub.organization_id, subscription=sub, period=period.period, due_at=period.at
            )
    except IntegrityError:  # another sweep claimed this period first: it sends it
        return None


def _send(send: ReportSend, sub: ReportSubscription, session: ReviewSession | None, now: datetime) -> None:
    try:
        send.recipients = _deliver(sub, session, now)
        send.sent_at = timezone.now()
    except Exception as e:  # recorded on the send row, shown on the page; the period stays claimed
        logger.exception("scheduled report %s failed", sub.pk)
        send.error = str(e) or e.__class__.__name__
    send.save(update_fields=["recipients", "sent_at", "error"])


def _deliver(sub: ReportSubscription, session: ReviewSession | None, now: datetime) -> int:
    org = sub.organization
    if sub.content == ReportSubscription.Content.PACK:
        session = session or ReviewSession.objects.for_org(org).filter(cancelled_at=None).first()
        if session is None:
            raise ValueError("No review session yet: there is no steering pack to send.")
    creator = Membership.objects.filter(organization=org, user=sub.created_by, is_active=True).first()
    recipients: list[tuple[str, Membership | None]] = [
        (m.user.email, m) for m in sub.members.filter(is_active=True).select_related("user") if m.user.email
    ]
    if creator is not None:  # outside addresses see what the creator sees; without a creator, nothing goes out
        recipients += [(address, creator) for address in sub.emails]
    local = timezone.localtime(now, org.tzinfo)
    subject = f"{sub.name} · {org.name} · {local:%d %b %Y}"
    stem = f"{org.slug}-{'steering-pack' if session else 'scorecard'}-{local:%Y-%m-%d}"
    rendered: dict[int | None, bytes] = {}
    for address, viewer in recipients:
        key = viewer.pk if viewer else None
        if key not in rendered:
            rendered[key] = _render(sub, session, viewer)
        about = f"the steering pack of {session.title}" if session else f"the scorecard {_card_name(sub)}"
        message = EmailMessage(subject, f"Attached: {about}, as of {local:%d %b %Y %H:%M}.\n", to=[address])
        message.attach(f"{stem}.{sub.format}", rendered[key], PACK_FORMATS[sub.format])
        message.send()
    return len(recipients)


def _card_name(sub: ReportSubscription) -> str:
    return sub.scorecard.name if sub.scorecard else "All KPIs"


def _render(sub: ReportSubscription, session: ReviewSession | None, viewer: Membership | None) -> bytes:
    if session is not None:
        return render_pack_as(sub.format, session=session, viewer=viewer)
    kpis = kpi_list(org=sub.organization, viewer=viewer, scorecard=sub.scorecard)
    return exports.as_xlsx(SCORECARD_COLUMNS, scorecard_table(kpis), tz=sub.organization.tzinfo, title=_card_name(sub))

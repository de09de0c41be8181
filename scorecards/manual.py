"""Attested manual values (docs/manual-values.md): the period calendar, who may enter and who confirms, and the
writes — entering a value, confirming it (then, and only then, it is the period's Measurement) or rejecting it.

Four eyes through governance.access.decision_authority (kind "manual_value"): the approver the KPI names confirms,
never the person who entered the value — not even when nobody else could (a value nobody else confirms never
counts). The tasks that remind people (escalations.engine.manual_values) read these rows; nothing here calls up.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.access import Authority, decision_authority, decision_reason
from governance.models import Membership, Organization, Role
from governance.services.audit import audit_log
from scorecards.ingestion.store import measurements_store
from scorecards.models import Kpi, ManualKpi, ManualValue, Measurement, Period

SELF_CONFIRM = "Four eyes: whoever entered a value never confirms or rejects it; the KPI's approver does."


# --- the calendar (pure) ----------------------------------------------------------------------------------------


def period_start(period: str, day: date) -> date:
    """The first day of the period `day` falls in: Monday, the 1st of the month, or of the quarter."""
    if period == Period.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period == Period.QUARTERLY:
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return day.replace(day=1)


def period_after(period: str, start: date) -> date:
    """The first day of the next period."""
    if period == Period.WEEKLY:
        return start + timedelta(days=7)
    months = 3 if period == Period.QUARTERLY else 1
    month = start.month - 1 + months
    return date(start.year + month // 12, month % 12 + 1, 1)


def due_period(period: str, today: date) -> date:
    """The period whose value is due today: the last one that has ended."""
    return period_start(period, period_start(period, today) - timedelta(days=1))


def period_label(period: str, start: date) -> str:
    if period == Period.WEEKLY:
        return f"Week of {start:%-d %b %Y}"
    if period == Period.QUARTERLY:
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    return f"{start:%B %Y}"


def measured_at(period: str, start: date, org: Organization) -> datetime:
    """The time a period's value is measured at: the last second of its last day, in the organization's zone."""
    end = datetime.combine(period_after(period, start), time(0), tzinfo=org.tzinfo) - timedelta(seconds=1)
    return end.astimezone(UTC)


def recent_periods(period: str, today: date, count: int = 6) -> list[date]:
    """The periods a value may be entered for on the page, newest first: the due one and those before it."""
    starts = [due_period(period, today)]
    while len(starts) < count:
        starts.append(due_period(period, starts[-1]))
    return starts


# --- who -------------------------------------------------------------------------------------------------------


def updaters(manual: ManualKpi) -> list[Membership]:
    """Who enters values: the named updaters, and always the owner."""
    named = [m for m in manual.updaters.all() if m.is_active]
    owner = manual.kpi.owner
    return [owner, *(m for m in named if m.pk != owner.pk)] if owner.is_active else named


def may_enter(manual: ManualKpi, membership: Membership) -> bool:
    return membership.organization_id == manual.organization_id and membership in updaters(manual)


def approvers(manual: ManualKpi) -> list[Membership]:
    """Who confirms: the named member, or every active member of the named role."""
    if manual.approver_id:
        return [manual.approver] if manual.approver.is_active else []
    return list(
        Membership.objects.for_org(manual.organization)
        .filter(role=manual.approver_role, is_active=True)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def approver_words(manual: ManualKpi) -> str:
    if manual.approver_id:
        return manual.approver.user.name
    return f"any {Role(manual.approver_role).label.lower()}" if manual.approver_role in Role.values else "nobody"


def confirm_authority(value: ManualValue, by: Membership) -> Authority:
    """May `by` confirm or reject this value? The approver may, never the person who entered it."""
    if by.organization_id != value.organization_id:
        return Authority(False, refusal="This value belongs to another organization.")
    if by.user_id == value.entered_by_id:
        return Authority(False, refusal=SELF_CONFIRM)
    manual = getattr(value.kpi, "manual", None)
    if manual is None:
        return Authority(False, refusal="This KPI is not kept by hand any more: its pending values stay undecided.")
    also = {m.pk for m in approvers(manual)}
    return decision_authority(kind="manual_value", by=by, interested={value.entered_by_id}, also=also)


# --- writes ------------------------------------------------------------------------------------------------------


def _manual(kpi: Kpi) -> ManualKpi:
    manual = ManualKpi.objects.filter(kpi=kpi).select_related("kpi__owner__user", "approver__user").first()
    if manual is None:
        raise ValidationError("This KPI is not kept by hand: its values come from its data source or the API.")
    return manual


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError({"value": "Enter a finite number."})
    if abs(value) > settings.MEASUREMENT_MAX_ABS:
        raise ValidationError({"value": f"Enter a number between -{settings.MEASUREMENT_MAX_ABS:g} and its opposite."})
    return float(value)


@transaction.atomic
def manual_value_enter(
    *,
    kpi: Kpi,
    by: Membership,
    period_start_day: date,
    value: float,
    note: str = "",
    evidence_url: str = "",
    reason: str = "",
    now: datetime | None = None,
) -> ManualValue:
    """A value for one ended period, waiting for confirmation. A confirmed period is locked: a new value for it is
    a correction and needs its reason."""
    if kpi.organization_id != by.organization_id:
        raise PermissionDenied("This KPI belongs to another organization.")
    # Locked: two entries for the same KPI run one after the other and the second sees the first.
    kpi = Kpi.objects.select_for_update(of=("self",)).select_related("organization").get(pk=kpi.pk)
    manual = _manual(kpi)
    if not may_enter(manual, by):
        raise PermissionDenied("Only the KPI's owner and its named updaters enter its values.")
    if kpi.archived_at is not None:
        raise ValidationError("This KPI is archived: it takes no values.")
    now = now or timezone.now()
    start = period_start(manual.period, period_start_day)
    label = period_label(manual.period, start)
    if start != period_start_day:
        raise ValidationError(
            {"period": f"{period_start_day} does not start a {manual.get_period_display().lower()} period."}
        )
    if period_after(manual.period, start) > timezone.localdate(now, kpi.organization.tzinfo):
        raise ValidationError({"period": f"{label} has not ended yet: its value is entered once it has."})
    if start.year < 1970:
        raise ValidationError({"period": "Periods before 1970 take no values."})
    number = _number(value)
    values = ManualValue.objects.filter(kpi=kpi, period_start=start)
    if values.filter(state=ManualValue.State.PENDING).exists():
        raise ValidationError(
            {"period": f"A value for {label} already waits for confirmation by {approver_words(manual)}."}
        )
    confirmed = values.filter(state=ManualValue.State.CONFIRMED).first()
    reason = (reason or "").strip()
    if confirmed is not None and not reason:
        raise ValidationError(
            {"reason": f"{label} is confirmed and locked: a correction needs its reason on the record."}
        )
    entry = ManualValue(
        organization_id=kpi.organization_id,
        kpi=kpi,
        period_start=start,
        value=number,
        note=(note or "").strip(),
        evidence_url=(evidence_url or "").strip(),
        correction_reason=reason if confirmed else "",
        corrects=confirmed,
        entered_by=by.user,
        entered_at=now,
    )
    entry.full_clean(exclude=["kpi", "organization", "corrects", "entered_by", "decided_by", "measurement"])
    entry.save()
    audit_log(
        org=kpi.organization,
        actor=by.user,
        verb="manual_value.corrected" if confirmed else "manual_value.entered",
        obj=entry,
        before={"value": confirmed.value} if confirmed else None,
        after={
            "kpi": kpi.key,
            "period": start.isoformat(),
            "value": number,
            "note": entry.note,
            "evidence_url": entry.evidence_url,
            **({"reason": reason} if confirmed else {}),
        },
    )
    return entry


def _decidable(value: ManualValue, by: Membership) -> ManualValue:
    if value.organization_id != by.organization_id:
        raise PermissionDenied("This value belongs to another organization.")
    # Locked: a confirmation and a rejection racing for one value cannot both land.
    stored = ManualValue.objects.select_for_update(of=("self",)).select_related("kpi__organization").get(pk=value.pk)
    if stored.state != ManualValue.State.PENDING:
        raise ValidationError(f"This value was already {stored.get_state_display().lower()}.")
    authority = confirm_authority(stored, by)
    if not authority or authority.self_approved:
        raise PermissionDenied(authority.refusal or SELF_CONFIRM)
    return stored


@transaction.atomic
def manual_value_confirm(*, value: ManualValue, by: Membership, now: datetime | None = None) -> ManualValue:
    """The approver confirms: the value becomes the period's Measurement (a correction replaces the earlier one,
    which ingestion keeps as a revision) and the period is locked."""
    value = _decidable(value, by)
    kpi, now = value.kpi, now or timezone.now()
    manual = _manual(kpi)
    at = measured_at(manual.period, value.period_start, kpi.organization)
    previous = ManualValue.objects.filter(kpi=kpi, period_start=value.period_start, state=ManualValue.State.CONFIRMED)
    previous.update(state=ManualValue.State.SUPERSEDED)
    measurements_store(org=kpi.organization, rows=[(kpi.pk, at, value.value)], source="manual", now=now)
    value.state, value.decided_by, value.decided_at = ManualValue.State.CONFIRMED, by.user, now
    value.measurement = Measurement.objects.filter(kpi=kpi, at=at).first()
    value.save(update_fields=["state", "decided_by", "decided_at", "measurement"])
    audit_log(
        org=kpi.organization,
        actor=by.user,
        verb="manual_value.confirmed",
        obj=value,
        after={"kpi": kpi.key, "period": value.period_start.isoformat(), "value": value.value, "at": at.isoformat()},
    )
    return value


@transaction.atomic
def manual_value_reject(*, value: ManualValue, by: Membership, reason: str, now: datetime | None = None) -> ManualValue:
    """The approver sends the value back with a reason; the period takes a new entry (a locked one keeps its
    confirmed value meanwhile)."""
    reason = decision_reason(reason)
    value = _decidable(value, by)
    value.state, value.decided_by, value.decided_at = ManualValue.State.REJECTED, by.user, now or timezone.now()
    value.rejection_reason = reason
    value.save(update_fields=["state", "decided_by", "decided_at", "rejection_reason"])
    audit_log(
        org=value.kpi.organization,
        actor=by.user,
        verb="manual_value.rejected",
        obj=value,
        after={"kpi": value.kpi.key, "period": value.period_start.isoformat(), "value": value.value, "reason": reason},
    )
    return value

"""Attested manual values (scorecards.manual): the calendar, entry, confirmation by someone else, the lock and its
corrections, rejection, staleness of a missed entry, and the refusal of values sent for a manual KPI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from governance.models import AuditEvent, Role
from scorecards import manual as calendar
from scorecards.evaluation.sweep import evaluate_due
from scorecards.manual import manual_value_confirm, manual_value_enter, manual_value_reject
from scorecards.models import Kpi, ManualValue, Measurement, MeasurementRevision, Period, Status
from scorecards.services import manual_kpi_set
from tests.conftest import Tenant

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
NOVEMBER = date(2026, 11, 1)
OCTOBER = date(2026, 10, 1)


def make_manual(t: Tenant, **options) -> Kpi:
    """The tenant's KPI kept by hand: the lead owns it, the member updates it, the executive confirms it."""
    kpi = t.kpi
    Kpi.objects.filter(pk=kpi.pk).update(
        cadence=timedelta(days=31), stale_after=timedelta(days=62), pending_for=timedelta(0), data_source=None
    )
    kpi.refresh_from_db()
    settings = {"period": Period.MONTHLY, "updaters": [t.member], "approver": t.executive} | options
    manual_kpi_set(kpi=kpi, actor=t.admin.user, **settings)
    return kpi


def enter(t: Tenant, kpi: Kpi, by=None, period=NOVEMBER, value=42.0, **extra) -> ManualValue:
    return manual_value_enter(kpi=kpi, by=by or t.member, period_start_day=period, value=value, now=NOW, **extra)


# --- the calendar ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "today", "due"),
    [
        (Period.MONTHLY, date(2026, 12, 7), date(2026, 11, 1)),
        (Period.MONTHLY, date(2027, 1, 1), date(2026, 12, 1)),
        (Period.WEEKLY, date(2026, 12, 7), date(2026, 11, 30)),  # a Monday: last week is due
        (Period.WEEKLY, date(2026, 12, 6), date(2026, 11, 23)),  # a Sunday: this week has not ended
        (Period.QUARTERLY, date(2026, 12, 7), date(2026, 7, 1)),
        (Period.QUARTERLY, date(2027, 1, 2), date(2026, 10, 1)),
    ],
)
def test_the_due_period_is_the_last_one_that_ended(period, today, due):
    assert calendar.due_period(period, today) == due
    assert calendar.period_after(period, due) <= today


def test_a_period_is_measured_at_its_last_second_in_the_organizations_zone(tenant):
    at = calendar.measured_at(Period.MONTHLY, NOVEMBER, tenant.org)  # Europe/Berlin, UTC+1 in winter
    assert at == datetime(2026, 11, 30, 22, 59, 59, tzinfo=UTC)


# --- entry and confirmation --------------------------------------------------------------------------------------


def test_an_entered_value_waits_and_counts_only_once_someone_else_confirms_it(tenant):
    kpi = make_manual(tenant)
    value = enter(tenant, kpi, note="From the board pack", evidence_url="https://docs.acme.test/board/11")

    assert value.state == ManualValue.State.PENDING
    assert not Measurement.objects.filter(kpi=kpi).exists()

    confirmed = manual_value_confirm(value=value, by=tenant.executive, now=NOW)

    assert (confirmed.state, confirmed.decided_by, confirmed.entered_by) == (
        ManualValue.State.CONFIRMED,
        tenant.executive.user,
        tenant.member.user,
    )
    point = Measurement.objects.get(kpi=kpi)
    assert (point.value, point.source, point.at) == (42.0, "manual", datetime(2026, 11, 30, 22, 59, 59, tzinfo=UTC))
    assert confirmed.measurement == point
    verbs = list(AuditEvent.objects.filter(object_type="scorecards.manualvalue").values_list("verb", flat=True))
    assert sorted(verbs) == ["manual_value.confirmed", "manual_value.entered"]


def test_the_owner_enters_too_and_a_stranger_to_the_kpi_does_not(tenant):
    kpi = make_manual(tenant)
    assert enter(tenant, kpi, by=tenant.lead).entered_by == tenant.lead.user
    with pytest.raises(PermissionDenied, match="owner and its named updaters"):
        enter(tenant, kpi, by=tenant.admin, period=OCTOBER)


def test_the_person_who_entered_a_value_never_confirms_it_even_as_its_approver(tenant):
    # Every member approves: the updater is one, and still may not confirm their own value.
    kpi = make_manual(tenant, approver=None, approver_role=Role.MEMBER)
    value = enter(tenant, kpi)

    with pytest.raises(PermissionDenied, match="Four eyes"):
        manual_value_confirm(value=value, by=tenant.member, now=NOW)
    with pytest.raises(PermissionDenied, match="Four eyes"):
        manual_value_reject(value=value, by=tenant.member, reason="Mine is wrong")
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.PENDING

    manual_value_confirm(value=value, by=tenant.lead, now=NOW)  # another member of the role
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.CONFIRMED


def test_only_the_named_approver_confirms(tenant):
    kpi = make_manual(tenant)
    value = enter(tenant, kpi)
    for outsider in (tenant.admin, tenant.lead):
        with pytest.raises(PermissionDenied, match="named approver"):
            manual_value_confirm(value=value, by=outsider, now=NOW)


def test_a_period_that_has_not_ended_takes_no_value_and_bad_input_is_refused(tenant):
    kpi = make_manual(tenant)
    with pytest.raises(ValidationError, match="has not ended yet"):
        enter(tenant, kpi, period=date(2026, 12, 1))
    with pytest.raises(ValidationError, match="does not start"):
        enter(tenant, kpi, period=date(2026, 11, 2))
    with pytest.raises(ValidationError, match="finite number"):
        enter(tenant, kpi, value=float("nan"))
    assert not ManualValue.objects.exists()


def test_a_second_value_for_a_pending_period_is_refused(tenant):
    kpi = make_manual(tenant)
    enter(tenant, kpi)
    with pytest.raises(ValidationError, match="already waits for confirmation"):
        enter(tenant, kpi, by=tenant.lead, value=43)


# --- lock, correction, rejection ---------------------------------------------------------------------------------


def test_a_confirmed_period_is_locked_and_a_correction_needs_a_reason_and_a_new_confirmation(tenant):
    kpi = make_manual(tenant)
    first = manual_value_confirm(value=enter(tenant, kpi), by=tenant.executive, now=NOW)

    with pytest.raises(ValidationError, match="confirmed and locked"):
        enter(tenant, kpi, value=40)

    correction = enter(tenant, kpi, value=40, reason="The board pack counted a duplicate")
    assert (correction.corrects, correction.correction_reason) == (first, "The board pack counted a duplicate")
    assert Measurement.objects.get(kpi=kpi).value == 42  # the confirmed value counts until the correction is

    manual_value_confirm(value=correction, by=tenant.executive, now=NOW + timedelta(hours=1))

    assert Measurement.objects.get(kpi=kpi).value == 40
    assert list(MeasurementRevision.objects.values_list("value", flat=True)) == [42]
    states = dict(ManualValue.objects.filter(kpi=kpi).values_list("pk", "state"))
    assert states == {first.pk: ManualValue.State.SUPERSEDED, correction.pk: ManualValue.State.CONFIRMED}
    corrected = AuditEvent.objects.get(verb="manual_value.corrected")
    assert corrected.after["reason"] == "The board pack counted a duplicate" and corrected.before == {"value": 42}


def test_a_rejection_needs_its_reason_and_the_period_takes_a_new_value(tenant):
    kpi = make_manual(tenant)
    value = enter(tenant, kpi)
    with pytest.raises(ValidationError, match="reason"):
        manual_value_reject(value=value, by=tenant.executive, reason=" ")

    rejected = manual_value_reject(value=value, by=tenant.executive, reason="That is October's figure")

    assert (rejected.state, rejected.rejection_reason) == (ManualValue.State.REJECTED, "That is October's figure")
    assert not Measurement.objects.filter(kpi=kpi).exists()
    with pytest.raises(ValidationError, match="already rejected"):
        manual_value_confirm(value=value, by=tenant.executive, now=NOW)
    assert enter(tenant, kpi, value=44).state == ManualValue.State.PENDING  # no reason needed: nothing was locked


# --- staleness ----------------------------------------------------------------------------------------------------


def test_a_missed_entry_makes_the_kpi_stale_like_any_other(tenant):
    kpi = make_manual(tenant)
    manual_value_confirm(value=enter(tenant, kpi, period=OCTOBER, value=1500), by=tenant.executive, now=NOW)

    evaluate_due(now=datetime(2026, 12, 7, 11, tzinfo=UTC))
    assert Kpi.objects.get(pk=kpi.pk).status == Status.ON_TRACK  # October's value, 37 days old

    # November's value was never entered: two periods after October ended, the KPI is stale.
    evaluate_due(now=datetime(2027, 1, 2, 12, tzinfo=UTC))
    stale = Kpi.objects.get(pk=kpi.pk)
    assert stale.status == Status.STALE


# --- values sent for a manual KPI ----------------------------------------------------------------------------------


def test_the_api_refuses_values_for_a_manual_kpi_and_stores_nothing(tenant):
    make_manual(tenant)
    body = {"measurements": [{"kpi": tenant.kpi.key, "at": "2026-11-29T08:00:00Z", "value": 3}]}
    response = Client().post(
        "/api/v1/measurements",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tenant.token}",
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "path": "measurements[0].kpi",
            "message": "is a manual KPI: its values are entered and confirmed on its page, not sent",
        }
    ]
    assert not Measurement.objects.exists()


# --- tenancy --------------------------------------------------------------------------------------------------------


def test_a_member_of_another_organization_can_neither_enter_nor_decide(tenant, stranger_tenant):
    kpi = make_manual(tenant)
    with pytest.raises(PermissionDenied):
        enter(tenant, kpi, by=stranger_tenant.member)
    value = enter(tenant, kpi)
    for outsider in (stranger_tenant.executive, stranger_tenant.admin):
        with pytest.raises(PermissionDenied):
            manual_value_confirm(value=value, by=outsider, now=NOW)
        with pytest.raises(PermissionDenied):
            manual_value_reject(value=value, by=outsider, reason="No")
    assert ManualValue.objects.get(pk=value.pk).state == ManualValue.State.PENDING

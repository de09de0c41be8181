"""The demo scorecards of Acme: KPIs with history and state, OKRs, scorecards, a pending transfer."""

from __future__ import annotations

import io
import math
import zoneinfo
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.utils import timezone

from demo.scorecards import quarter_of, seed_scorecards
from demo.story import SPECS
from governance.models import Organization, Role
from scorecards.evaluation.thresholds import parse_thresholds, raw_status
from scorecards.models import (
    CheckIn,
    KeyResult,
    Kpi,
    Measurement,
    Objective,
    OwnershipTransfer,
    Scorecard,
    StatusChange,
)
from scorecards.services import transfer_authority

TODAY = date(2026, 11, 29)
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def _query_budget() -> int:
    """Measured on PostgreSQL: 23 queries (2 reads, a bulk insert per table, 4 batches of measurements, the audited
    transfer request). SQLite needs more, smaller batches for its bind-parameter limit; so the budget is a fixed
    part with margin plus the measurement batches of the database in use: never one query per row."""
    rows = len(SPECS) * 183
    fields = [f for f in Measurement._meta.concrete_fields if not f.primary_key]
    per_batch = min(2000, connection.ops.bulk_batch_size(fields, [None] * rows))
    return 25 + math.ceil(rows / per_batch)


def _people_only(monkeypatch) -> Organization:
    """seed_demo's organizations and people, without its own call of seed_scorecards (each test picks `today`)."""
    monkeypatch.setattr("demo.management.commands.seed_demo.seed_scorecards", lambda org: None)
    call_command("seed_demo", stdout=io.StringIO())
    return Organization.objects.get(slug="acme")


@pytest.fixture
def acme(db, monkeypatch) -> Organization:
    org = _people_only(monkeypatch)
    seed_scorecards(org, today=TODAY)
    return org


def _values(kpi: Kpi) -> list[float]:
    return list(kpi.measurements.order_by("at").values_list("value", flat=True))


def _evaluated(kpi: Kpi) -> float:
    """fn over the aggregate window ending at the newest measurement, recomputed from the stored rows."""
    newest = kpi.measurements.order_by("-at").first()
    if kpi.aggregate_fn == "last":
        return newest.value
    window = kpi.measurements.filter(at__gt=newest.at - kpi.aggregate_window, at__lte=newest.at)
    values = list(window.values_list("value", flat=True))
    return sum(values) if kpi.aggregate_fn == "sum" else sum(values) / len(values)


def _reference(kpi: Kpi, today: date) -> float | None:
    if kpi.target_by is None:
        return kpi.target_value
    share = (today - kpi.baseline_at).days / (kpi.target_by - kpi.baseline_at).days
    return kpi.baseline_value + (kpi.target_value - kpi.baseline_value) * min(1.0, max(0.0, share))


def test_seeding_is_bulk_and_quick(db, monkeypatch, django_assert_max_num_queries):
    org = _people_only(monkeypatch)
    with django_assert_max_num_queries(_query_budget()):  # bulk, whatever the machine's speed
        seed_scorecards(org, today=TODAY)
    assert Measurement.objects.count() > 35 * 180  # six months of daily points for almost every KPI


def test_about_forty_kpis_of_acme_in_every_status(acme):
    kpis = list(Kpi.objects.all())
    assert 38 <= len(kpis) <= 42 and len(kpis) == len(SPECS)
    assert {kpi.organization_id for kpi in kpis} == {acme.pk}
    assert not Kpi.objects.filter(organization__slug="globex").exists()
    counts = Counter(kpi.status for kpi in kpis)
    assert set(counts) == {"on_track", "at_risk", "off_track", "stale", "no_data"}
    share = {status: n / len(kpis) for status, n in counts.items()}
    assert 0.5 <= share["on_track"] <= 0.7
    assert 0.15 <= share["at_risk"] <= 0.25
    assert 0.08 <= share["off_track"] <= 0.16
    assert counts["stale"] == 2 and counts["no_data"] == 1
    assert {kpi.direction for kpi in kpis} == {"increase", "decrease", "range"}
    assert {kpi.team.key for kpi in kpis} == {"leadership", "marketing", "supply-chain", "sales", "finance"}


def test_kpi_settings_are_valid_and_owned_by_active_members(acme):
    kpis = list(Kpi.objects.select_related("owner", "team"))
    for kpi in kpis:
        kpi.full_clean()
        spec = parse_thresholds(kpi.direction, kpi.thresholds, has_target=kpi.target_value is not None)
        assert kpi.owner.organization_id == acme.pk and kpi.owner.is_active
        assert (kpi.cadence, kpi.stale_after, kpi.evaluate_every) == (
            timedelta(days=1),
            timedelta(days=3),
            timedelta(hours=1),
        )
        assert (kpi.pending_for, kpi.keep_for, kpi.recovery_margin) == (timedelta(hours=2), timedelta(hours=1), "2%")
        assert kpi.escalation == "standard"
        if spec.warning.relative:
            assert kpi.target_value is not None
    assert sum(kpi.owner_id == kpi.team.lead_id for kpi in kpis) > len(kpis) / 2  # mostly the team lead
    assert any(kpi.owner_id != kpi.team.lead_id for kpi in kpis)  # some a team member
    assert sum(isinstance(kpi.thresholds["warning"], str) for kpi in kpis) >= 3  # relative ("95%")
    dated = [kpi for kpi in kpis if kpi.target_by]
    q_start, q_end = quarter_of(TODAY)
    assert len(dated) >= 2
    assert all((k.baseline_at, k.target_by) == (q_start, q_end) and k.baseline_value is not None for k in dated)
    dc = Kpi.objects.get(key="sc.dc_utilisation")
    assert (dc.direction, dc.thresholds) == ("range", {"warning": [75, 90], "critical": [65, 95]})
    leads = Kpi.objects.get(key="mkt.leads")
    assert (leads.aggregate_fn, leads.aggregate_window) == ("sum", timedelta(days=7))
    assert (leads.surge_change, leads.surge_window) == ("30%", timedelta(days=7))


def test_the_founding_story(acme):
    leads = Kpi.objects.get(key="mkt.leads")
    values = _values(leads)
    last_week, three_weeks_earlier = sum(values[-7:]), sum(values[-28:-21])
    assert last_week >= 1.3 * three_weeks_earlier
    assert leads.status == "on_track" and leads.last_value == last_week

    assert Kpi.objects.get(key="sc.inventory_turnover").status in ("off_track", "at_risk")
    assert Kpi.objects.get(key="sc.otif").status in ("off_track", "at_risk")
    dc = Kpi.objects.get(key="sc.dc_utilisation")
    assert dc.last_value > 90 and dc.status != "on_track"  # above its range
    freight = _values(Kpi.objects.get(key="fin.air_freight"))
    assert sum(freight[-7:]) > 1.3 * sum(freight[-28:-21])
    # Supply Chain went bad within the last three weeks, not before.
    turnover = Kpi.objects.get(key="sc.inventory_turnover")
    three_weeks_ago = turnover.evaluated_at - timedelta(days=21)
    assert turnover.status_changes.filter(changed_at__lt=three_weeks_ago).first().new == "on_track"


def test_rows_belong_to_acme(acme):
    assert not Measurement.objects.exclude(organization=acme).exists()
    assert not Measurement.objects.exclude(organization=F("kpi__organization")).exists()
    assert not StatusChange.objects.exclude(organization=acme).exists()
    assert not StatusChange.objects.exclude(organization=F("kpi__organization")).exists()
    for model in (Objective, KeyResult, CheckIn, Scorecard, OwnershipTransfer):
        assert model.objects.exists() and not model.objects.exclude(organization=acme).exists(), model


def test_evaluator_state_matches_the_data(acme):
    for kpi in Kpi.objects.all():
        newest = kpi.measurements.order_by("-at").first()
        assert kpi.evaluated_at and kpi.next_evaluation_at == kpi.evaluated_at + timedelta(hours=1)
        assert kpi.reason
        if newest is None:
            assert (kpi.status, kpi.last_value, kpi.last_measured_at) == ("no_data", None, None)
            assert not kpi.status_changes.exists()
            continue
        assert kpi.last_measured_at == newest.at
        assert kpi.last_value == pytest.approx(_evaluated(kpi))
        if kpi.status == "stale":
            assert newest.at <= kpi.evaluated_at - timedelta(days=5)
            continue
        assert newest.at.astimezone(BERLIN).date() == TODAY
        spec = parse_thresholds(kpi.direction, kpi.thresholds, has_target=kpi.target_value is not None)
        raw = raw_status(kpi.last_value, spec.resolve(_reference(kpi, TODAY)))
        assert (kpi.pending_status or kpi.status) == raw, kpi.key
        assert any(f"{kpi.last_value:,.{d}f}" in kpi.reason for d in (0, 1, 2)), kpi.reason


def test_status_history_ends_in_the_current_status(acme):
    total = 0
    for kpi in Kpi.objects.all():
        changes = list(kpi.status_changes.order_by("changed_at"))
        total += len(changes)
        if not changes:
            continue
        assert changes[0].old == "no_data"
        assert changes[-1].new == kpi.status, kpi.key
        assert kpi.status_since == changes[-1].changed_at
        assert all(a.new == b.old for a, b in zip(changes, changes[1:], strict=False))
        assert all(c.processed_at == c.changed_at and c.reason and c.thresholds for c in changes)
        assert len(changes) <= 10, kpi.key  # a handful, not daily flapping
    assert 40 <= total <= 200

    pending = Kpi.objects.exclude(pending_status="")
    assert pending.count() == 1
    kpi = pending.get()
    assert kpi.pending_status != kpi.status
    assert kpi.pending_since == kpi.evaluated_at - timedelta(minutes=40)


def test_measurements_are_at_eight_berlin_time_across_daylight_saving(acme):
    kpi = Kpi.objects.get(key="sc.inventory_turnover")
    assert kpi.measurements.count() == 183
    for at in Measurement.objects.values_list("at", flat=True):
        assert at.astimezone(BERLIN).time() == time(8)
    summer = kpi.measurements.get(at__date=date(2026, 10, 24)).at
    winter = kpi.measurements.get(at__date=date(2026, 10, 26)).at
    assert summer == datetime(2026, 10, 24, 6, tzinfo=UTC)  # CEST, UTC+2
    assert winter == datetime(2026, 10, 26, 7, tzinfo=UTC)  # CET, UTC+1
    assert Measurement.objects.filter(kpi=kpi, at__date=date(2026, 10, 25)).get().at.hour == 7


def test_objectives_and_key_results_are_consistent(acme):
    q_start, q_end = quarter_of(TODAY)
    company = Objective.objects.get(parent=None)
    assert company.owner.user.email == "ceo@acme.test" and company.team.key == "leadership"
    children = list(company.children.select_related("team", "owner"))
    assert len(children) == 3
    for objective in [company, *children]:
        assert (objective.period_start, objective.period_end) == (q_start, q_end) == (date(2026, 10, 1), q_end)
    for child in children:
        assert child.owner_id == child.team.lead_id
        assert 2 <= child.key_results.count() <= 3

    key_results = list(KeyResult.objects.select_related("kpi", "owner__user"))
    linked = [kr for kr in key_results if kr.kpi_id]
    manual = [kr for kr in key_results if not kr.kpi_id]
    assert len(linked) > len(manual) and len(manual) == 2
    for kr in linked:
        assert kr.target == kr.kpi.target_value
        if kr.kpi.target_by:
            assert kr.start == kr.kpi.baseline_value
        better = kr.target > kr.start if kr.kpi.direction == "increase" else kr.target < kr.start
        assert better, kr.key
    for kr in manual:
        check_ins = list(kr.check_ins.order_by("at"))
        assert kr.owner is not None and 2 <= len(check_ins) <= 3
        assert all(c.by_id == kr.owner.user_id for c in check_ins)
        assert kr.current == check_ins[-1].value and kr.start <= kr.current <= kr.target
        assert all(q_start <= c.at.astimezone(BERLIN).date() <= TODAY for c in check_ins)


def test_scorecards_and_the_pending_transfer(acme):
    exec_card = Scorecard.objects.get(key="exec")
    assert exec_card.name == "Company scorecard" and exec_card.viewers == ["role:executive"]
    assert 10 <= exec_card.kpis.count() <= 14
    for team in acme.teams.all():
        card = Scorecard.objects.get(key=f"team-{team.key}")
        assert list(card.teams.all()) == [team]

    transfer = OwnershipTransfer.objects.get()
    sales = acme.teams.get(key="sales")
    assert transfer.state == "pending" and transfer.kpi.team == sales
    assert transfer.from_owner == sales.lead == transfer.kpi.owner
    assert transfer.requested_by == sales.lead.user and transfer.reason
    assert transfer.to_owner != transfer.from_owner and transfer.to_owner.is_active
    assert transfer.to_owner.role == Role.MEMBER
    # Four eyes: someone other than the requester may decide it, without self-approval.
    deciders = [transfer_authority(transfer, m) for m in acme.memberships.exclude(user=transfer.requested_by)]
    assert any(a and not a.self_approved for a in deciders)
    assert not transfer_authority(transfer, sales.lead)


def test_default_today_is_the_organizations_local_date(db, monkeypatch):
    org = _people_only(monkeypatch)
    seed_scorecards(org)
    newest = Measurement.objects.order_by("-at").first().at
    assert newest <= timezone.now()
    assert timezone.now() - newest < timedelta(days=1)

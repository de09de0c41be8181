"""Calculated KPIs end to end: the manifest's formula field, the "computed from" edges it keeps, cycles, and the
recomputation that new input data sets off (in a transaction here, and by a real worker at the end)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from dependencies.formulas import formulas_recompute
from dependencies.models import Dependency
from dependencies.services import dependency_create, dependency_delete
from governance.manifest.engine import apply_manifest, export_manifest
from scorecards.ingestion.store import measurements_store
from scorecards.models import Kpi, Measurement, Status
from tests.conftest import make_tenant, worker_settled
from tests.factories import KpiFactory
from tests.test_platform import celery_worker  # noqa: F401  (the suite's one way to run a real worker)

T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)


@pytest.fixture
def org(tenant):
    for key, unit in (("fin.revenue", "EUR"), ("fin.cogs", "EUR"), ("fin.share", "%"), ("sales.orders", "orders")):
        KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.member, key=key, name=key, unit=unit)
    return tenant


def calculated(tenant, key: str, formula: str | None, unit: str = "", **extra) -> dict:
    item = {
        "key": key,
        "name": f"Calculated {key}",
        "team": tenant.team.key,
        "owner": tenant.lead.user.email,
        **({"unit": unit} if unit else {}),
        "thresholds": {"warning": 0.3, "critical": 0.2},
        **extra,
    }
    return item | ({"formula": formula} if formula is not None else {})


def manifest(tenant, *kpis: dict, dependencies: list | None = None) -> dict:
    doc = {"version": 1, "organization": {"slug": tenant.org.slug, "name": tenant.org.name}, "kpis": list(kpis)}
    return doc | ({"dependencies": dependencies} if dependencies else {})


def applied(doc: dict):
    result = apply_manifest(doc)
    assert result.errors == [], result.errors.lines()
    return result


def errors(doc: dict) -> list[tuple[str, str]]:
    result = apply_manifest(doc)
    assert result.errors
    return list(result.errors)


def computed_edges(tenant) -> set[tuple[str, str]]:
    edges = Dependency.objects.filter(organization=tenant.org, kind=Dependency.Kind.COMPUTED_FROM)
    return set(edges.values_list("upstream__key", "downstream__key"))


def store(tenant, *points: tuple[str, datetime, float], source: str = "api") -> None:
    ids = dict(Kpi.objects.filter(organization=tenant.org).values_list("key", "pk"))
    measurements_store(org=tenant.org, rows=[(ids[key], at, value) for key, at, value in points], source=source)


def values(key: str) -> list[tuple[datetime, float]]:
    return list(Measurement.objects.filter(kpi__key=key).order_by("at").values_list("at", "value"))


def test_the_formula_makes_computed_from_edges_and_keeps_them_in_step(org):
    applied(manifest(org, calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    assert Kpi.objects.get(key="fin.margin").formula == "(fin.revenue - fin.cogs) / fin.revenue"
    # From the calculated KPI to each input: its breach reaches the inputs' owners, as any upstream's does.
    assert computed_edges(org) == {("fin.margin", "fin.revenue"), ("fin.margin", "fin.cogs")}

    applied(manifest(org, calculated(org, "fin.margin", "fin.cogs / fin.revenue")))
    assert computed_edges(org) == {("fin.margin", "fin.revenue"), ("fin.margin", "fin.cogs")}
    applied(manifest(org, calculated(org, "fin.margin", "sum(sales.orders, 7d) / avg(sales.orders, 4w)")))
    assert computed_edges(org) == {("fin.margin", "sales.orders")}
    applied(manifest(org, calculated(org, "fin.margin", None)))
    assert computed_edges(org) == set()
    assert Kpi.objects.get(key="fin.margin").formula == ""


def test_the_formula_round_trips_through_the_export(org):
    applied(manifest(org, calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    exported = export_manifest(org.org)
    margin = next(item for item in exported["kpis"] if item["key"] == "fin.margin")
    assert margin["formula"] == "(fin.revenue - fin.cogs) / fin.revenue"
    assert "dependencies" not in exported  # computed edges follow the formula, they are not declared
    again = apply_manifest(exported)
    assert again.errors == [] and [c for c in again.changes if c.kind in ("kpi", "dependency")] == []
    assert computed_edges(org) == {("fin.margin", "fin.revenue"), ("fin.margin", "fin.cogs")}


def test_the_dry_run_shows_the_formula_change(org):
    applied(manifest(org, calculated(org, "fin.margin", "fin.cogs / fin.revenue")))
    result = apply_manifest(manifest(org, calculated(org, "fin.margin", "fin.revenue / fin.cogs")), dry_run=True)
    (change,) = result.changes
    assert change.fields == [("formula", "fin.cogs / fin.revenue", "fin.revenue / fin.cogs")]
    assert Kpi.objects.get(key="fin.margin").formula == "fin.cogs / fin.revenue"


@pytest.mark.parametrize(
    "formula, unit, message",
    [
        ("fin.revenue + fin.nope", "", 'column 15: unknown KPI "fin.nope" (not a KPI of this organization)'),
        ("fin.revenue + fin.share", "EUR", 'column 1: cannot add "%" (fin.share) to "EUR" (fin.revenue)'),
        ("fin.revenue - fin.cogs", "%", 'gives "EUR" but the KPI\'s unit is "%"'),
        ("fin.margin * 2", "", "a formula cannot use its own KPI"),
        ("fin.revenue ** 2", "", "column 1: only +, -, * and / are allowed"),
    ],
)
def test_the_manifest_refuses_a_bad_formula_by_path(org, formula, unit, message):
    assert errors(manifest(org, calculated(org, "fin.margin", formula, unit=unit))) == [("kpis[0].formula", message)]
    assert not Kpi.objects.filter(key="fin.margin").exists()


def test_a_formula_cannot_name_another_organizations_kpi(org):
    stranger = make_tenant("globex")
    KpiFactory(organization=stranger.org, team=stranger.team, owner=stranger.lead, key="globex.secret")
    assert errors(manifest(org, calculated(org, "fin.margin", "globex.secret / fin.revenue"))) == [
        ("kpis[0].formula", 'column 1: unknown KPI "globex.secret" (not a KPI of this organization)')
    ]
    assert computed_edges(stranger) == set() and computed_edges(org) == set()


def test_formulas_that_feed_each_other_are_refused_as_a_cycle(org):
    doc = manifest(org, calculated(org, "calc.a", "calc.b * 2"), calculated(org, "calc.b", "calc.a + fin.cogs"))
    assert errors(doc) == [("kpis[0].formula", "closes the cycle calc.a -> calc.b -> calc.a")]


def test_a_formula_may_not_close_a_cycle_with_declared_edges(org):
    declared = [{"from": "fin.revenue", "to": "fin.margin", "kind": "informs"}]
    doc = manifest(org, calculated(org, "fin.margin", "fin.cogs / fin.revenue"), dependencies=declared)
    assert errors(doc) == [("dependencies[0]", "closes the cycle fin.revenue -> fin.margin -> fin.revenue")]


def test_a_declared_edge_may_not_close_a_cycle_with_a_formula(org):
    applied(manifest(org, calculated(org, "fin.margin", "fin.cogs / fin.revenue")))
    revenue, margin = Kpi.objects.get(key="fin.revenue"), Kpi.objects.get(key="fin.margin")
    with pytest.raises(ValidationError, match="would close the cycle fin.revenue -> fin.margin -> fin.revenue"):
        dependency_create(actor=org.admin.user, upstream=revenue, downstream=margin, kind="informs")
    with pytest.raises(ValidationError, match="Pick a kind"):
        dependency_create(actor=org.admin.user, upstream=revenue, downstream=margin, kind="computed_from")
    edge = Dependency.objects.get(upstream=margin, downstream=revenue)
    with pytest.raises(ValidationError, match="comes from the KPI's formula"):
        dependency_delete(dependency=edge, actor=org.admin.user)


def test_new_input_data_recomputes_the_calculated_kpi(org):
    applied(manifest(org, calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    store(org, ("fin.revenue", T0, 200), ("fin.cogs", T0, 150))
    result = formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.revenue").pk])
    assert (result.computed, result.reasons) == (1, {})
    assert values("fin.margin") == [(T0, 0.25)]
    margin = Kpi.objects.get(key="fin.margin")
    assert (margin.last_measured_at, margin.formula_reason) == (T0, "")
    assert margin.schedule.needs_evaluation  # its evaluation follows as for any data

    # A newer revenue alone: the value stands at the newest moment both inputs have data, so it is unchanged.
    store(org, ("fin.revenue", T0 + timedelta(days=1), 300))
    formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.revenue").pk])
    assert values("fin.margin") == [(T0, 0.25)]
    store(org, ("fin.cogs", T0 + timedelta(days=1), 150))
    formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.cogs").pk])
    assert values("fin.margin") == [(T0, 0.25), (T0 + timedelta(days=1), 0.5)]


def test_windowed_aggregates_read_the_window_ending_at_the_value(org):
    applied(manifest(org, calculated(org, "sales.weekly", "sum(sales.orders, 7d)", unit="orders")))
    store(org, *[("sales.orders", T0 + timedelta(days=d), 10 + d) for d in range(10)])
    formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="sales.orders").pk])
    assert values("sales.weekly") == [(T0 + timedelta(days=9), sum(10 + d for d in range(3, 10)))]


def test_division_by_zero_and_missing_inputs_give_a_reason_not_a_value(org):
    applied(
        manifest(
            org,
            calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue"),
            calculated(org, "fin.cogs_share", "fin.cogs / fin.share"),
            calculated(org, "sales.week", "sum(sales.orders, 7d) / fin.revenue", unit="orders/EUR"),
        )
    )
    earlier = T0 - timedelta(days=10)  # the newest moment both inputs of each formula have data
    store(org, ("fin.revenue", earlier, 0), ("fin.cogs", earlier, 150))
    store(org, ("sales.orders", T0 - timedelta(days=30), 5), ("sales.orders", T0, 5))
    ids = list(Kpi.objects.filter(key__in=["fin.revenue", "fin.cogs", "sales.orders"]).values_list("pk", flat=True))
    result = formulas_recompute(org=org.org, kpi_ids=ids)
    assert result.reasons == {
        "fin.margin": "fin.revenue is 0",
        "fin.cogs_share": "no data for fin.share",
        "sales.week": "no data for sales.orders in the window",
    }
    assert Kpi.objects.get(key="fin.margin").formula_reason == "fin.revenue is 0"
    assert not Measurement.objects.filter(kpi__formula__gt="").exists()

    store(org, ("fin.revenue", earlier, 100))
    formulas_recompute(org=org.org, kpi_ids=ids)
    assert Kpi.objects.get(key="fin.margin").formula_reason == ""
    assert values("fin.margin") == [(earlier, -0.5)]


def test_a_chain_of_formulas_recomputes_inputs_first(org):
    applied(
        manifest(
            org,
            # Listed before its input on purpose: the order comes from the graph.
            calculated(org, "fin.margin_pct", "fin.margin * 100", unit="%"),
            calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue"),
        )
    )
    assert computed_edges(org) == {
        ("fin.margin_pct", "fin.margin"),
        ("fin.margin", "fin.revenue"),
        ("fin.margin", "fin.cogs"),
    }
    store(org, ("fin.revenue", T0, 200), ("fin.cogs", T0, 150))
    result = formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.cogs").pk])
    assert result.computed == 2
    assert values("fin.margin_pct") == [(T0, 25.0)]


def test_a_stale_input_makes_the_calculated_kpi_stale(org):
    applied(manifest(org, calculated(org, "fin.margin", "fin.cogs / fin.revenue")))
    old = T0 - timedelta(days=10)
    store(org, ("fin.revenue", old - timedelta(days=1), 400), ("fin.revenue", T0, 200), ("fin.cogs", old, 100))
    formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.revenue").pk])
    # Its newest value is as old as its oldest input's, so stale_after judges it as it judges that input.
    assert Kpi.objects.get(key="fin.margin").last_measured_at == old
    assert values("fin.margin") == [(old, 0.25)]


@pytest.mark.celery_worker
def test_values_sent_for_a_calculated_kpi_are_refused_and_nothing_is_stored(org):
    applied(manifest(org, calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    body = {
        "measurements": [
            {"kpi": "fin.revenue", "at": "2026-11-02T09:00:00Z", "value": 100},
            {"kpi": "fin.margin", "at": "2026-11-02T09:00:00Z", "value": 0.9},
        ]
    }
    response = Client().post(
        "/api/v1/measurements",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {org.token}",
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"path": "measurements[1].kpi", "message": "is a calculated KPI: its values come from its formula, not sent"}
    ]
    # The whole delivery is refused: the good item is not stored either, so a corrected resend stores it once.
    assert not Measurement.objects.exists()


def test_a_real_worker_recomputes_and_evaluates_after_new_input_data(celery_worker):  # noqa: F811
    tenant = make_tenant("acme")
    for key in ("fin.revenue", "fin.cogs"):
        KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.member, key=key, unit="EUR")
    applied(manifest(tenant, calculated(tenant, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    # Two deliveries, as two API calls would make them: each queues its own recomputation after its commit.
    store(tenant, ("fin.cogs", at, 190))
    store(tenant, ("fin.revenue", at, 200))
    deadline = time.monotonic() + 60
    # Read only while the worker is idle: SQLite's shared test database refuses a read during its writes.
    worker_settled()
    while Kpi.objects.get(key="fin.margin").status == Status.NO_DATA:
        assert time.monotonic() < deadline, "the worker never recomputed and evaluated fin.margin"
        time.sleep(0.2)
        worker_settled()
    margin = Kpi.objects.get(key="fin.margin")
    assert values("fin.margin") == [(at, 0.05)]
    assert (margin.last_value, margin.status) == (pytest.approx(0.05), Status.OFF_TRACK)


def test_the_kpi_page_shows_the_formula_the_reason_and_the_edges(org, stranger_tenant):
    applied(manifest(org, calculated(org, "fin.margin", "(fin.revenue - fin.cogs) / fin.revenue")))
    store(org, ("fin.revenue", T0, 0), ("fin.cogs", T0, 150))
    formulas_recompute(org=org.org, kpi_ids=[Kpi.objects.get(key="fin.revenue").pk])
    margin, revenue = Kpi.objects.get(key="fin.margin"), Kpi.objects.get(key="fin.revenue")
    client = org.client(org.member)
    html = client.get(reverse("scorecards:kpi_detail", args=[org.org.slug, margin.pk])).content.decode()
    assert "<code>(fin.revenue - fin.cogs) / fin.revenue</code>" in html
    assert "No value: fin.revenue is 0" in html
    panel = client.get(reverse("dependencies:dependency_neighbourhood", args=[org.org.slug, margin.pk]))
    assert panel.content.decode().count("input of the formula") == 2
    panel = client.get(reverse("dependencies:dependency_neighbourhood", args=[org.org.slug, revenue.pk]))
    assert "calculated from this KPI" in panel.content.decode()
    graph = org.client(org.admin).get(reverse("dependencies:dependency_graph", args=[org.org.slug])).content.decode()
    assert "Computed from" in graph and "computed from" in graph.lower()

    stranger = stranger_tenant.client(stranger_tenant.admin)
    assert stranger.get(reverse("scorecards:kpi_detail", args=[org.org.slug, margin.pk])).status_code == 404
    assert stranger.get(reverse("scorecards:kpi_detail", args=[stranger_tenant.org.slug, margin.pk])).status_code == 404

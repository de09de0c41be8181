from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.models import AuditEvent
from scorecards.models import KeyResult, Kpi, Measurement, Objective, Status
from scorecards.services import key_result_check_in
from tests.factories import KpiFactory
from tests.scorecards.test_transfers import _settings


def _add_series(kpi: Kpi, values: list[float]) -> None:
    now = timezone.now()
    Measurement.objects.bulk_create(
        Measurement(organization=kpi.organization, kpi=kpi, at=now - timedelta(days=len(values) - i), value=v)
        for i, v in enumerate(values)
    )


@pytest.fixture
def many_kpis(tenant):
    kpis = []
    for i in range(40):
        kpi = KpiFactory(
            organization=tenant.org,
            team=tenant.team,
            owner=tenant.lead,
            name=f"Metric {i:02}",
            status=[Status.ON_TRACK, Status.AT_RISK, Status.OFF_TRACK, Status.STALE][i % 4],
            last_measured_at=timezone.now() - timedelta(hours=i),
        )
        _add_series(kpi, [100 + i + d for d in range(30)])
        kpis.append(kpi)
    return kpis


def test_the_scorecard_is_built_with_a_constant_number_of_queries(tenant, many_kpis, django_assert_max_num_queries):
    client = tenant.client(tenant.executive)
    url = reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})
    with django_assert_max_num_queries(15):
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.count(b'class="spark spark-') == 41


def test_the_density_chosen_is_remembered_for_the_person(tenant, many_kpis):
    client = tenant.client(tenant.executive)
    url = reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})
    assert 'class="table kpi-table density-comfortable"' in client.get(url).content.decode()
    html = client.get(url, {"density": "compact", "status": "off_track"}, HTTP_HX_REQUEST="true").content.decode()
    assert "density-compact" in html and '?density=comfortable&amp;status=off_track"' in html  # filters kept
    assert 'class="table kpi-table density-compact"' in client.get(url).content.decode()  # remembered
    other = tenant.client(tenant.member).get(url).content.decode()
    assert "density-comfortable" in other  # per person
    assert "density-sideways" not in client.get(url, {"density": "sideways"}).content.decode()


def test_it_filters_by_status_and_text_and_returns_only_the_table_to_htmx(tenant, many_kpis):
    client = tenant.client(tenant.executive)
    url = reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})
    response = client.get(url, {"status": "off_track", "q": "metric 0"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html and 'id="kpi-table"' in html
    names = {k.name for k in many_kpis if k.status == "off_track" and k.name.startswith("Metric 0")}
    assert names and all(name in html for name in names)
    assert "Metric 01" not in html  # at risk


def test_it_sorts_by_status_worst_first_and_reverses(tenant, many_kpis):
    client = tenant.client(tenant.executive)
    url = reverse("scorecards:kpi_list", kwargs={"org_slug": tenant.org.slug})
    html = client.get(url, {"sort": "status"}).content.decode()
    assert html.index("Off track</span>") < html.index("At risk</span>") < html.index("On track</span>")
    html = client.get(url, {"sort": "-status"}).content.decode()
    assert html.index("On track</span>") < html.index("Off track</span>")


def test_a_scorecard_shows_only_its_kpis_and_respects_viewers(tenant, many_kpis):
    scorecard = tenant.scorecard
    scorecard.viewers = ["role:executive"]
    scorecard.save()
    url = reverse("scorecards:scorecard", kwargs={"org_slug": tenant.org.slug, "scorecard_id": scorecard.pk})
    html = tenant.client(tenant.executive).get(url).content.decode()
    assert "Throughput" in html and "Metric 00" not in html
    assert tenant.client(tenant.member).get(url).status_code == 403


def test_the_kpi_page_shows_chart_reason_and_measurements(tenant):
    kpi = tenant.kpi
    _add_series(kpi, [900.0, 950.0, 1010.0])
    Kpi.objects.filter(pk=kpi.pk).update(
        reason="950 leads < warning 1000",
        status="at_risk",
        pending_status="off_track",
        pending_since=timezone.now() - timedelta(minutes=40, seconds=5),
    )
    detail = reverse("scorecards:kpi_detail", args=[tenant.org.slug, kpi.pk])
    html = tenant.client(tenant.member).get(detail).content.decode()
    assert "950 leads &lt; warning 1000" in html or "950 leads < warning 1000" in html
    assert '<span class="pending-word">pending </span>→ Off track' in html
    assert "held 40 min of 2h" in html  # pending_for 2h: a worsening waits pending_for, not keep_for
    assert 'role="img"' in html and "<desc>" in html
    assert "1,010 leads" in html


def test_owner_edits_settings_and_each_change_is_audited(tenant):
    url = reverse("scorecards:kpi_settings", kwargs={"org_slug": tenant.org.slug, "kpi_id": tenant.kpi.pk})
    response = tenant.client(tenant.lead).post(url, _settings(tenant.kpi, warning="1100", pending_for="4h"))
    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="kpi.updated")
    assert event.before == {"thresholds": {"warning": 1000, "critical": 800}, "pending_for": "2h"}
    assert event.after["thresholds"] == {"warning": 1100.0, "critical": 800.0}


def test_a_member_who_is_not_the_owner_cannot_edit_settings(tenant):
    url = reverse("scorecards:kpi_settings", kwargs={"org_slug": tenant.org.slug, "kpi_id": tenant.kpi.pk})
    assert tenant.client(tenant.member).post(url, _settings(tenant.kpi)).status_code == 403


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"warning": "700"}, "warning", "warning must be above critical for direction increase"),
        ({"direction": "range", "warning": "40, 60", "critical": "45, 70"}, "warning", "must contain"),
        ({"pending_for": "2 hours"}, "pending_for", "is not a duration"),
        ({"warning": "95%", "critical": "80%", "target_value": ""}, "warning", "set a target"),
        ({"target_by": "2026-12-31", "baseline_value": "800"}, "baseline_at", "together"),
        ({"recovery_margin": "lots"}, "recovery_margin", "percentage"),
    ],
)
def test_the_settings_form_refuses_bad_input_next_to_the_field(tenant, changes, field, message):
    url = reverse("scorecards:kpi_settings", kwargs={"org_slug": tenant.org.slug, "kpi_id": tenant.kpi.pk})
    response = tenant.client(tenant.admin).post(url, _settings(tenant.kpi, **changes))
    assert response.status_code == 422
    assert message in " ".join(response.context["form"].errors[field])
    assert not AuditEvent.objects.filter(verb="kpi.updated").exists()


def test_an_admin_creates_a_kpi(tenant):
    url = reverse("scorecards:kpi_create", kwargs={"org_slug": tenant.org.slug})
    data = _settings(
        tenant.kpi,
        name="Cost per lead",
        direction="decrease",
        warning="40",
        critical="55",
        target_value="35",
        unit="EUR",
    ) | {"key": "mkt.cpl", "owner": tenant.member.pk}
    response = tenant.client(tenant.admin).post(url, data)
    kpi = Kpi.objects.get(key="mkt.cpl")
    assert response.url == reverse("scorecards:kpi_detail", args=[tenant.org.slug, kpi.pk])
    assert (kpi.owner, kpi.thresholds, kpi.organization) == (
        tenant.member,
        {"warning": 40.0, "critical": 55.0},
        tenant.org,
    )
    response = tenant.client(tenant.admin).post(url, data)
    assert response.status_code == 422 and "already exists" in response.content.decode()


def test_okr_progress_rolls_up_and_owners_check_in(tenant):
    kr = tenant.key_result  # start 0, target 10, owned by the member
    key_result_check_in(key_result=kr, by=tenant.member, value=12)  # progress is not capped
    Kpi.objects.filter(pk=tenant.kpi.pk).update(last_value=900, status="at_risk")
    KeyResult.objects.create(
        organization=tenant.org,
        objective=tenant.objective,
        key="kr.kpi",
        title="Throughput up",
        kpi=tenant.kpi,
        start=800,
        target=1200,
    )
    html = tenant.client(tenant.executive).get(reverse("scorecards:okr_tree", args=[tenant.org.slug])).content.decode()
    assert "120%" in html and "25%" in html  # (900 - 800) / (1200 - 800)
    assert "72%" in html  # the objective: average of 120% and 25%
    assert 'class="status status-at_risk">At risk' in html  # the weakest key result
    url = reverse("scorecards:key_result_check_in", kwargs={"org_slug": tenant.org.slug, "key_result_id": kr.pk})
    assert tenant.client(tenant.executive).post(url, {"value": 3}).status_code == 403
    tenant.client(tenant.member).post(url, {"value": 5})
    kr.refresh_from_db()
    assert kr.current == 5 and kr.check_ins.count() == 2


def test_a_key_result_below_its_start_says_so_with_the_numbers(tenant):
    key_result_check_in(key_result=tenant.key_result, by=tenant.member, value=-48)  # start 0, target 10: -480%
    html = tenant.client(tenant.executive).get(reverse("scorecards:okr_tree", args=[tenant.org.slug])).content.decode()
    assert "-480%" not in html
    assert "below the starting value" in html
    assert "−48" in html or "-48" in html  # the value itself, beside start and target


def test_my_work_lists_what_i_own_and_what_waits_for_me(tenant):
    html = tenant.client(tenant.lead).get(reverse("scorecards:my_work", args=[tenant.org.slug])).content.decode()
    assert "Throughput" in html
    html = tenant.client(tenant.admin).get(reverse("scorecards:my_work", args=[tenant.org.slug])).content.decode()
    assert "Approve or reject" in html and "Reorganisation" in html


def test_an_objective_cannot_become_its_own_ancestor(tenant):
    child = Objective.objects.create(
        organization=tenant.org,
        key="o.child",
        title="Child",
        owner=tenant.member,
        team=tenant.team,
        period_start=tenant.objective.period_start,
        period_end=tenant.objective.period_end,
        parent=tenant.objective,
    )
    url = reverse(
        "scorecards:objective_edit", kwargs={"org_slug": tenant.org.slug, "objective_id": tenant.objective.pk}
    )
    data = {
        "key": "o.grow",
        "title": "Grow",
        "owner": tenant.executive.pk,
        "team": tenant.team.pk,
        "period_start": "2026-10-01",
        "period_end": "2026-12-31",
        "parent": child.pk,
    }
    response = tenant.client(tenant.executive).post(url, data)
    assert response.status_code == 422
    assert "cycle: Grow → Child → Grow" in response.content.decode()
    tenant.objective.refresh_from_db()
    assert tenant.objective.parent is None
    data["title"], data["parent"] = "Grow faster", ""
    assert tenant.client(tenant.executive).post(url, data).status_code == 302
    assert AuditEvent.objects.filter(verb="objective.updated").get().after["title"] == "Grow faster"
    assert tenant.client(tenant.member).post(url, data).status_code == 403


def test_the_overview_counts_kpis_by_status_and_lists_the_ones_needing_attention(tenant, many_kpis):
    html = tenant.client(tenant.member).get(reverse("scorecards:overview", args=[tenant.org.slug])).content.decode()
    assert '<span class="stat-value">41</span>' in html  # 40 + the tenant's own KPI
    assert '<span class="count-n">10</span> Off track' in html
    assert "Needs attention" in html and "Metric 02" in html  # off track
    assert "Metric 00" not in html  # on track


def test_the_overview_of_an_organization_without_kpis_says_how_they_arrive(stranger_tenant):
    Kpi.objects.filter(organization=stranger_tenant.org).delete()
    html = stranger_tenant.client(stranger_tenant.member).get(f"/o/{stranger_tenant.org.slug}/").content.decode()
    assert "No KPIs are tracked yet." in html

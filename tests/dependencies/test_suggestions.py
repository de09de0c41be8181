"""Suggested dependencies end to end: the run finds the lag in stored measurements, owners answer, a dismissal is
remembered, the pages are scoped to the organization."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse

from dependencies.models import Dependency, SuggestedDependency
from dependencies.suggestions import Settings, suggestion_confirm, suggestion_dismiss, suggestions_refresh
from governance.models import AuditEvent, Role
from scorecards.models import Measurement
from tests.conftest import Tenant
from tests.factories import KpiFactory, MembershipFactory, TeamFactory

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
CONFIG = Settings(history_days=120, max_lag=21, min_points=30, alpha=0.05, per_kpi=3)
DAYS = 121


@pytest.fixture
def pair(tenant: Tenant):
    """Marketing's leads and Supply's stock: stock moves 14 days after leads, the other way round."""
    marketing = TeamFactory(organization=tenant.org, key="marketing", name="Marketing")
    supply = TeamFactory(organization=tenant.org, key="supply", name="Supply Chain")
    owner = MembershipFactory(organization=tenant.org, role=Role.MEMBER, user__email="sc@acme.test")
    leads = KpiFactory(organization=tenant.org, team=marketing, owner=tenant.member, key="mkt.leads", name="Leads")
    stock = KpiFactory(organization=tenant.org, team=supply, owner=owner, key="sc.stock", name="Stock cover")
    return leads, stock


def store(tenant: Tenant, kpis, noise: float, seed: int = 0) -> None:
    """One value a day for DAYS days up to NOW: the leads walk at random, the stock follows 14 days later."""
    rng = np.random.default_rng(seed)
    leads, stock = kpis
    up = rng.normal(size=DAYS)
    down = np.concatenate([rng.normal(size=14), -up[:-14]]) + rng.normal(scale=noise, size=DAYS)
    Measurement.objects.filter(kpi__in=kpis).delete()
    start = NOW - timedelta(days=DAYS - 1)
    Measurement.objects.bulk_create(
        Measurement(organization=tenant.org, kpi=kpi, at=start + timedelta(days=i), value=float(v))
        for kpi, changes in ((leads, up), (stock, down))
        for i, v in enumerate(np.cumsum(changes) + 1000)
    )


def test_the_run_suggests_the_pair_with_its_lag(tenant, pair):
    store(tenant, pair, noise=0.5)
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 1
    s = SuggestedDependency.objects.get()
    assert (s.upstream, s.downstream, s.lag_days) == (*pair, 14)
    assert s.coefficient < -0.7 and s.points >= 100 and s.q_value < 0.001 and s.computed_at == NOW


def test_a_pair_within_one_team_is_never_suggested(tenant, pair):
    leads, stock = pair
    stock.team = leads.team
    stock.save()
    store(tenant, pair, noise=0.5)
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 0


def test_both_owners_confirm_and_the_edge_gets_the_measured_lag(tenant, pair):
    store(tenant, pair, noise=0.5)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    s = SuggestedDependency.objects.get()
    s = suggestion_confirm(suggestion=s, actor=pair[0].owner.user, kind="drives_demand")
    assert s.state == SuggestedDependency.State.SUGGESTED and not Dependency.objects.exists()
    s = suggestion_confirm(suggestion=s, actor=pair[1].owner.user, kind="drives_demand")
    edge = Dependency.objects.get()
    assert (edge.upstream, edge.downstream, edge.lag, s.state, s.dependency) == (
        *pair,
        timedelta(days=14),
        SuggestedDependency.State.CONFIRMED,
        edge,
    )
    assert AuditEvent.objects.filter(verb="dependency.created").count() == 1
    assert AuditEvent.objects.filter(verb="suggestion.confirmed").count() == 2
    # The next run leaves a drawn edge alone.
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 0


def test_only_the_owners_answer(tenant, pair):
    store(tenant, pair, noise=0.5)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    s = SuggestedDependency.objects.get()
    with pytest.raises(ValidationError):
        suggestion_confirm(suggestion=s, actor=tenant.admin.user, kind="informs")
    with pytest.raises(ValidationError):
        suggestion_dismiss(suggestion=s, actor=pair[0].owner.user, reason="  ")


def test_a_dismissed_pair_comes_back_only_when_the_evidence_is_much_stronger(tenant, pair):
    store(tenant, pair, noise=1.2, seed=4)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    s = SuggestedDependency.objects.get()
    weak = abs(s.coefficient)
    assert 0.3 < weak < 0.75
    suggestion_dismiss(suggestion=s, actor=pair[1].owner.user, reason="Stock follows the season, not leads")
    # The same evidence again, and a little stronger: still dismissed, the reason kept.
    store(tenant, pair, noise=1.0, seed=4)
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 0
    s.refresh_from_db()
    assert s.state == SuggestedDependency.State.DISMISSED and s.reason.startswith("Stock follows")
    # Much stronger (|r| up by more than 0.2): asked again.
    store(tenant, pair, noise=0.2, seed=4)
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 1
    s.refresh_from_db()
    assert s.state == SuggestedDependency.State.SUGGESTED and abs(s.coefficient) >= weak + 0.2
    assert AuditEvent.objects.filter(verb="suggestion.resuggested").count() == 1


def test_an_open_suggestion_the_data_no_longer_supports_is_removed(tenant, pair):
    store(tenant, pair, noise=0.5)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    Measurement.objects.filter(kpi=pair[1]).delete()
    assert suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG) == 0
    assert not SuggestedDependency.objects.exists()


def _page(name: str, tenant: Tenant, **kwargs) -> str:
    return reverse(f"dependencies:{name}", kwargs={"org_slug": tenant.org.slug, **kwargs})


def test_the_pages_show_the_evidence_and_take_the_answers(tenant, pair):
    store(tenant, pair, noise=0.5)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    s = SuggestedDependency.objects.get()
    admin = tenant.client(tenant.admin)
    listing = admin.get(_page("suggestion_list", tenant)).content.decode()
    assert "Leads" in listing and "Stock cover" in listing and "14 d" in listing
    detail = admin.get(_page("suggestion_detail", tenant, suggestion_id=s.pk)).content.decode()
    assert 'class="series series-lead"' in detail and "14 days later" in detail
    assert "Only the two owners answer" in detail
    graph = admin.get(_page("dependency_graph", tenant)).content.decode()
    assert "edge-suggested" in graph
    owner = tenant.client(pair[0].owner)
    refused = owner.post(_page("suggestion_dismiss", tenant, suggestion_id=s.pk), {"reason": ""})
    assert refused.status_code == 422
    done = owner.post(_page("suggestion_dismiss", tenant, suggestion_id=s.pk), {"reason": "Unrelated"})
    assert done.status_code == 302
    s.refresh_from_db()
    assert s.state == SuggestedDependency.State.DISMISSED and s.decided_by == pair[0].owner.user


def test_a_stranger_sees_no_suggestion(tenant, stranger_tenant, pair):
    store(tenant, pair, noise=0.5)
    suggestions_refresh(org=tenant.org, now=NOW, config=CONFIG)
    s = SuggestedDependency.objects.get()
    stranger = stranger_tenant.client(stranger_tenant.admin)
    mine = reverse("dependencies:suggestion_list", kwargs={"org_slug": stranger_tenant.org.slug})
    assert "Stock cover" not in stranger.get(mine).content.decode()
    for name in ("suggestion_detail",):
        assert stranger.get(_page(name, tenant, suggestion_id=s.pk)).status_code == 404
        foreign = reverse(f"dependencies:{name}", kwargs={"org_slug": stranger_tenant.org.slug, "suggestion_id": s.pk})
        assert stranger.get(foreign).status_code == 404
    for name in ("suggestion_confirm", "suggestion_dismiss"):
        foreign = reverse(f"dependencies:{name}", kwargs={"org_slug": stranger_tenant.org.slug, "suggestion_id": s.pk})
        assert stranger.post(foreign, {"kind": "informs", "reason": "x"}).status_code == 404
    s.refresh_from_db()
    assert s.state == SuggestedDependency.State.SUGGESTED


def test_the_weekly_task_runs_each_organization_on_its_own(tenant, stranger_tenant, pair, settings):
    from celery import current_app

    from dependencies.tasks import suggest_dependencies_for

    entry = settings.CELERY_BEAT_SCHEDULE["suggest-dependencies"]
    assert entry["task"] in current_app.tasks
    settings.FORESIGHT_DISCOVERY = vars(CONFIG)
    store(tenant, pair, noise=0.5)
    with time_machine.travel(NOW, tick=False):
        assert suggest_dependencies_for.apply(args=[stranger_tenant.org.pk]).get() == 0
        assert suggest_dependencies_for.apply(args=[tenant.org.pk]).get() == 1
    assert SuggestedDependency.objects.get().organization == tenant.org

"""What-if on a KPI: a constructed graph and policy with known answers; the page; strangers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from dependencies.models import Dependency, SuggestedDependency
from escalations.models import EscalationLevel, EscalationPolicy
from escalations.reporting.whatif import what_if
from governance.services.teams import team_update
from scorecards.models import Kpi
from tests.factories import KpiFactory, MembershipFactory, TeamFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def graph(tenant):
    """The worked example's policy on the tenant's KPI, and downstream: A (declared, 3 days), B after A (7 days),
    C suggested by the data (14 days), D after B (10 days: beyond two weeks)."""
    head = MembershipFactory(organization=tenant.org, user__email="head@acme.test")
    team_update(team=tenant.team, actor=tenant.admin.user, lead=head)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=DAY / 6
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard")
    tenant.kpi.refresh_from_db()
    other = TeamFactory(organization=tenant.org, key="sc", name="Supply")
    a, b, c, d = (
        KpiFactory(organization=tenant.org, team=other, owner=tenant.member, key=f"sc.{k}", name=k.upper())
        for k in "abcd"
    )
    for up, down, lag in ((tenant.kpi, a, 3), (a, b, 7), (b, d, 10)):
        Dependency.objects.create(
            organization=tenant.org, upstream=up, downstream=down, kind="drives_demand", lag=lag * DAY
        )
    SuggestedDependency.objects.create(
        organization=tenant.org,
        upstream=tenant.kpi,
        downstream=c,
        coefficient=0.6,
        lag_days=14,
        points=150,
        p_value=1e-9,
        q_value=1e-6,
        computed_at=T0,
    )
    tenant.head = head
    return tenant, (a, b, c, d)


def test_what_follows_two_weeks_off_track(graph):
    tenant, (a, b, c, d) = graph
    w = what_if(kpi=tenant.kpi, start=T0, weeks=2)
    assert [(t.at, t.level, t.exhausted) for t in w.told] == [
        (T0 + 2 * DAY, 1, False),
        (T0 + 3 * DAY, 2, False),
        (T0 + 5 * DAY, 2, True),
    ]
    assert w.told[0].people == [tenant.head.user.name]  # the team lead (the owner never: four eyes)
    assert w.told[1].executives == [tenant.executive.user.name]
    assert [(x.kpi, x.expected_at, x.within, x.review_due) for x in w.downstream] == [
        (a, T0 + 3 * DAY, True, T0 + 2 * DAY),
        (b, T0 + 10 * DAY, True, None),
        (c, T0 + 14 * DAY, True, T0 + 2 * DAY),
        (d, T0 + 20 * DAY, False, None),
    ]
    assert w.downstream[2].basis == "measured: r 0.60, 14 days later" and w.downstream[3].via == [
        tenant.kpi.name,
        "A",
        "B",
        "D",
    ]


def test_the_page_and_its_bad_input(graph, stranger_tenant):
    tenant, _ = graph
    url = reverse("escalations:kpi_what_if", args=[tenant.org.slug, tenant.kpi.pk])
    client = tenant.client(tenant.member)
    with time_machine.travel(T0, tick=False):
        html = client.get(url).content.decode()
    assert "Level 2" in html and "measured: r 0.60, 14 days later" in html and "Escalation exhausted" in html
    refused = client.get(url, {"weeks": "0"})
    assert refused.status_code == 422 and "Level 2" not in refused.content.decode()
    stranger = stranger_tenant.client(stranger_tenant.admin)
    assert stranger.get(url).status_code == 404
    foreign = reverse("escalations:kpi_what_if", args=[stranger_tenant.org.slug, tenant.kpi.pk])
    assert stranger.get(foreign).status_code == 404

"""The demo as `seed_demo` builds it, seeded once for the module (the `demo` fixture): what a newcomer sees."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dependencies.models import SuggestedDependency
from escalations.decisions import agenda
from escalations.models import (
    Decision,
    DependencyReview,
    DependencySignal,
    MitigationAction,
    MitigationPath,
    Notification,
    ReviewSession,
    Task,
    Workstream,
)
from escalations.reporting import health
from escalations.workstreams.selectors import escalation_state, level_skipped
from governance.manifest.engine import apply_manifest, export_manifest
from governance.models import Membership, Organization, Role
from scorecards.ingestion.pulls import data_sources_claim_due
from scorecards.models import DataSource, Kpi, SurgeSignal


@pytest.mark.django_db
def test_the_demo_has_workstreams_in_every_state(demo):
    acme = Workstream.objects.filter(organization__slug="acme")
    resolutions = set(acme.values_list("resolution", flat=True))
    assert {"", "recovered", "accepted_risk"} <= resolutions
    assert set(acme.values_list("kind", flat=True)) >= {"mitigation", "data_freshness"}
    assert set(acme.values_list("paths__state", flat=True)) >= {"submitted", "approved", "rejected"}
    assert acme.filter(resolved_at=None, next_escalation_at__isnull=False, level__gte=1).exists()  # under way
    assert acme.exclude(exhausted_at=None).exists()
    assert MitigationAction.objects.exclude(overdue_at=None).exists()
    assert Task.objects.filter(kind="escalation", state="open").exists()
    # Every open episode belongs to a KPI that is in breach or stale now, and at most one per KPI.
    for ws in acme.filter(resolved_at=None).select_related("kpi"):
        assert ws.kpi.status in ("at_risk", "off_track", "stale")


@pytest.mark.django_db
def test_the_leads_surge_reaches_supply_chains_owner_as_one_review(demo):
    """The founding story, made by the real sweeps from the demo's data: the evaluation sweep records the leads'
    surge, process_status_changes carries it to Supply Chain, whose owner has one review task for both KPIs."""
    leads = Kpi.objects.get(organization__slug="acme", key="mkt.leads")
    [surge] = SurgeSignal.objects.filter(kpi=leads)
    assert surge.change >= 0.3 and surge.processed_at is not None and leads.last_surge_at == surge.at
    assert (leads.status, leads.needs_evaluation) == ("on_track", False)  # a surge, not a breach
    [signal] = DependencySignal.objects.filter(kpi=leads, kind="surge")  # its breach in the summer sent one too
    assert (signal.kind, signal.value, signal.propagated_at) == ("surge", surge.current, surge.processed_at)
    assert signal.trend == f"{surge.change * 100:+.0f}% leads over 7 days"
    assert signal.cause.startswith("Qualified leads per week surged: +")

    supply = Membership.objects.get(organization__slug="acme", user__email="vp.supply@acme.test")
    [task] = Task.objects.filter(kind="dependency_review", assignee=supply, state="open")
    assert (task.state, task.due_at) == ("open", surge.at + timedelta(days=2))  # the leads' policy: 2 days
    reviews = task.review_parts
    assert [r.kpi.key for r in reviews] == ["sc.inventory_turnover", "sc.otif"]
    for review in reviews:
        [delivery] = review.signals.all()
        assert (delivery.signal, delivery.throttled, review.answer) == (signal, False, "")

    page = Client()
    page.force_login(supply.user)
    inbox = page.get(reverse("escalations:task_inbox", args=["acme"])).content.decode()
    assert ">Qualified leads per week</a> surged: +" in inbox and signal.trend in inbox
    assert f"Value <strong>{surge.current:,.0f}</strong>" in inbox
    assert "Answer for Inventory turnover" in inbox and "Answer for On-time in full" in inbox


@pytest.mark.django_db
def test_the_demo_has_twelve_weeks_of_governance_history(demo):
    """The sweeps replay the last 12 weeks at their own times, so the health page has weeks to show: escalations
    and approvals in past weeks, the episodes that ended closed as people would have closed them. (The history
    moves with the calendar: on 18 days sampled over the next half year there were at least 4, 2 and 4.)"""
    acme = Organization.objects.get(slug="acme")
    weeks, metrics = health.health_report(org=acme, weeks=12)
    by_key = {metric.key: metric for metric in metrics}
    assert sum(1 for n in by_key["escalations"].values[:-1] if n) >= 3
    assert sum(1 for days in by_key["time_to_approval"].values[:-1] if days is not None) >= 2
    assert by_key["overdue_actions"].values[:-1] == [0] * 11  # the past episodes' owners did their actions

    ended = Workstream.objects.filter(organization=acme, resolution="recovered", opened_at__gte=weeks[0].start)
    assert ended.count() >= 3
    for ws in ended:
        assert not ws.tasks.filter(state__in=["open", "acknowledged"]).exists()
        for path in ws.paths.filter(state="approved"):
            assert ws.opened_at < path.filed_at < path.reviewed_at < ws.resolved_at
            # done the day before they were due, unless the KPI recovered first
            resolved = timezone.localdate(ws.resolved_at, acme.tzinfo)
            assert not path.actions.filter(done_at=None, due__lte=resolved).exists()
    # Escalation tasks carry the times their steps fell due, not the moment the demo was seeded.
    created = Task.objects.filter(organization=acme, kind="escalation").values_list("created_at", flat=True)
    assert len({at.date() for at in created}) >= 10
    # What reached people before today is read; a review of a past episode was answered.
    assert not Notification.objects.filter(
        organization=acme, read_at=None, created_at__lt=timezone.now() - timedelta(days=1)
    ).exists()
    assert Notification.objects.filter(organization=acme, read_at=None).exists()
    assert DependencyReview.objects.filter(organization=acme, answer="no_impact").exists()


@pytest.mark.django_db
def test_nobody_in_the_demo_decides_on_their_own_work(demo):
    """Four eyes: no path is reviewed, and no workstream closed, by its KPI's owner or the path's filer; every
    decision is in the log, none self-approved."""
    reviewed = MitigationPath.objects.filter(organization__slug="acme").exclude(reviewed_by=None)
    assert reviewed.exists()
    for path in reviewed.select_related("workstream__kpi__owner"):
        assert path.reviewed_by_id not in (path.filed_by_id, path.workstream.kpi.owner.user_id), path
        assert Decision.objects.filter(path=path, decided_by=path.reviewed_by).exists()
    closed = Workstream.objects.filter(organization__slug="acme").exclude(closed_by=None)
    for ws in closed.select_related("kpi__owner").prefetch_related("paths"):
        assert ws.closed_by_id != ws.kpi.owner.user_id and ws.closed_by_id not in {
            p.filed_by_id for p in ws.paths.all()
        }
        assert Decision.objects.filter(workstream=ws, kind="workstream_closed").exists()
    decisions = Decision.objects.filter(organization__slug="acme")
    assert decisions.filter(kind="review_no_impact").exists()
    assert not decisions.filter(self_approved=True).exists()


@pytest.mark.django_db
def test_maya_is_never_escalated_to_for_her_own_kpis_and_the_skip_is_on_their_timeline(demo):
    """Maya Martins leads Marketing and owns its KPIs; the standard policy's level 1 is the team lead: that level is
    skipped for her KPIs, saying why, and the executives are reached instead."""
    maya = Membership.objects.get(organization__slug="acme", user__email="vp.marketing@acme.test")
    assert not Task.objects.filter(kind="escalation", assignee=maya, kpi__owner=maya).exists()
    escalated = Workstream.objects.filter(kpi__owner=maya, level__gte=1)
    assert escalated.exists()
    for ws in escalated:
        assert ws.events.filter(verb="level_skipped", text__endswith="Maya Martins owns this KPI").exists()
    # Skipping level 1 starts level 2's business-hours clock: seeded inside business hours, every episode has moved on
    # to the executives; outside them, one stands at the skipped level, and its state line says why nobody was told.
    for ws in escalated:
        state = escalation_state(ws, skipped=level_skipped(ws))
        if ws.level == 1:
            assert state.endswith("Maya Martins owns this KPI")
        else:
            assert "level 2" in state and "Maya" not in state
    assert escalated.filter(tasks__kind="escalation", tasks__assignee__role="executive").exists()


@pytest.mark.django_db
def test_seed_demo_builds_the_demo_organization_once(demo):
    call_command("seed_demo", stdout=io.StringIO())  # again: it is idempotent
    acme = Organization.objects.get(slug="acme")
    assert acme.name == "Acme Electronics" and acme.timezone == "Europe/Berlin"
    assert set(acme.teams.values_list("name", flat=True)) == {
        "Leadership",
        "Marketing",
        "Supply Chain",
        "Sales",
        "Finance",
    }
    assert set(acme.memberships.values_list("role", flat=True)) == set(Role.values)
    assert not acme.teams.filter(lead=None).exists()
    coo = Membership.objects.filter(user__email="coo@acme.test").values_list("organization__slug", flat=True)
    assert set(coo) == {"acme", "globex"}
    # Through the login page, as a person logs in: the throttling backend needs the request.
    response = Client().post("/login/", {"username": "ceo@acme.test", "password": "steerco-demo"})
    assert response.status_code == 302 and response.url == "/"


@pytest.mark.django_db
def test_the_demo_has_a_closed_review_with_decisions_and_an_open_agenda(demo):
    acme = Organization.objects.get(slug="acme")
    session = ReviewSession.objects.get(organization=acme)
    assert not session.is_open and session.attendees.count() >= 4
    assert {"target_changed", "risk_accepted", "transfer_requested", "action_assigned"} <= set(
        session.decisions.values_list("kind", flat=True)
    )
    items = agenda.agenda(org=acme)
    assert any(i.awaiting for i in items) and {"off_track", "stale"} <= {i.severity for i in items}
    assert all(not i.decided for i in items)


@pytest.mark.django_db
def test_the_demo_has_a_healthy_and_a_failing_source_and_neither_is_due_at_once(demo):
    org = Organization.objects.get(slug="acme")
    sources = {source.key: source for source in DataSource.objects.for_org(org)}
    assert set(sources) == {"warehouse", "nps-panel"}
    warehouse, panel = sources["warehouse"], sources["nps-panel"]
    assert warehouse.failures == 0 and list(warehouse.runs.exclude(error="").values_list("error", flat=True)) == [
        "the query for sc.otif ran longer than 30 s and was cancelled"
    ]
    assert panel.failures == panel.runs.exclude(error="").count() > 0
    assert Kpi.objects.get(organization=org, key="mkt.brand_nps").data_source == panel
    # The running demo pulls nothing before the next planned run, then fails once a day or every 6 hours. Claimed
    # at the seeding moment: a planned run may fall due during the test itself.
    assert data_sources_claim_due(now=demo) == []
    # The seeded sources are what the manifest accepts and exports unchanged.
    result = apply_manifest(export_manifest(org), dry_run=True)
    assert not [path for path, _ in result.errors if path.startswith("data_sources")]
    assert not [change for change in result.changes if change.kind == "data_source"]


@pytest.mark.django_db
def test_the_data_suggests_the_dependency_nobody_declared(demo):
    """The founding story in the data: six earlier campaigns each lifted the leads, and two weeks later the
    stock-out rate; the hidden-dependency run suggests exactly that, with its lag, and the evidence page shows it."""
    leads, stockouts = (Kpi.objects.get(organization__slug="acme", key=k) for k in ("mkt.leads", "sc.stockout_rate"))
    s = SuggestedDependency.objects.get(upstream=leads, downstream=stockouts)
    assert (s.state, s.lag_days) == ("suggested", 14) and s.coefficient > 0.4 and s.q_value < 0.01
    admin = Membership.objects.get(organization__slug="acme", role="admin", user__email="admin@acme.test")
    page = Client()
    page.force_login(admin.user)
    html = page.get(reverse("dependencies:suggestion_detail", args=["acme", s.pk])).content.decode()
    assert "14 days later" in html and "Stock-out rate" in html

"""Dependency propagation with time travel (SEMANTICS.md section 4): upstream signals become dependency reviews for
the direct downstream owners, grouped and throttled; answers open preventive workstreams; unanswered reviews
escalate at exact times; a downstream episode waits on its upstream's."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dependencies.models import Dependency
from dependencies.services import dependency_create
from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.models import (
    DependencyReview,
    DependencyReviewSignal,
    DependencySignal,
    EscalationLevel,
    EscalationPolicy,
    Notification,
    Task,
    Workstream,
)
from escalations.workstreams.selectors import escalation_state, review_participants, review_state, upstream_causes
from escalations.workstreams.services import dependency_review_answer, task_acknowledge, workstream_close
from governance import tenancy
from governance.models import AuditEvent
from governance.services.api_tokens import api_token_create
from governance.services.teams import team_update
from scorecards.evaluation.sweep import evaluate_due
from scorecards.models import Kpi, StatusChange, SurgeSignal
from scorecards.services import ownership_transfer_direct
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
SUPPLY = ("supply.fill_rate", "supply.otif")
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


def policy(org, key: str, due: timedelta, *levels: tuple[list[str], timedelta]) -> EscalationPolicy:
    stored = EscalationPolicy.objects.create(
        organization=org, key=key, name=key.capitalize(), mitigation_due=due, ack_timeout=4 * HOUR
    )
    for position, (targets, wait) in enumerate(levels, start=1):
        EscalationLevel.objects.create(organization=org, policy=stored, position=position, targets=targets, wait=wait)
    return stored


@pytest.fixture
def graph(tenant):
    """Marketing's leads (and promotions) drive Supply Chain's fill rate; Sales' orders too.

    Marketing's policy: reviews and episodes due after 1 day, then Supply's team lead (wait 1 day), then the
    executives (wait 1 day). Supply's own policy: 2 days, then its team lead (wait 1 day).
    """
    org = tenant.org
    policy(org, "marketing", DAY, (["team_lead"], DAY), (["role:executive"], DAY))
    policy(org, "supply", 2 * DAY, (["team_lead"], DAY))
    marketer = MembershipFactory(organization=org, user__email="mia@acme.test", user__name="Mia Marketing")
    marketing_lead = MembershipFactory(organization=org, user__email="mark@acme.test", user__name="Mark Lead")
    planner = MembershipFactory(organization=org, user__email="sam@acme.test", user__name="Sam Supply")
    supply_lead = MembershipFactory(organization=org, user__email="sue@acme.test", user__name="Sue Lead")
    marketing = TeamFactory(organization=org, key="marketing", name="Marketing", lead=marketing_lead)
    supply = TeamFactory(organization=org, key="supply", name="Supply Chain", lead=supply_lead)
    common = dict(organization=org, pending_for=timedelta(0), keep_for=HOUR)
    leads = KpiFactory(
        **common,
        key="marketing.leads",
        name="Marketing leads",
        team=marketing,
        owner=marketer,
        unit="leads",
        thresholds={"warning": 50, "critical": 20},
        surge_change="30%",
        surge_window=7 * DAY,
        escalation="marketing",
    )
    promos = KpiFactory(**common, key="marketing.promos", name="Promotions", team=marketing, owner=marketer)
    orders = KpiFactory(**common, key="sales.orders", name="Orders", team=tenant.team, owner=tenant.lead)
    fill = KpiFactory(
        **common,
        key="supply.fill_rate",
        name="Fill rate",
        team=supply,
        owner=planner,
        unit="%",
        thresholds={"warning": 90, "critical": 80},
        escalation="supply",
    )
    Kpi.objects.filter(pk__in=[promos.pk, orders.pk]).update(escalation="marketing")
    dependency_create(actor=None, upstream=leads, downstream=fill, kind="drives_demand", lag=3 * DAY)
    dependency_create(actor=None, upstream=promos, downstream=fill, kind="drives_demand")  # no lag: 24 h
    dependency_create(actor=None, upstream=orders, downstream=fill, kind="consumes_capacity")
    tenant.kpis = {k.key: Kpi.objects.get(pk=k.pk) for k in (leads, promos, orders, fill)}
    tenant.marketer, tenant.planner, tenant.supply_lead = marketer, planner, supply_lead
    _, tenant.planner_token = api_token_create(org=org, actor=None, name="Sam's script", membership=planner)
    _, tenant.lead_token = api_token_create(org=org, actor=None, name="Sue's script", membership=supply_lead)
    return tenant


def call(token: str, method: str, path: str, body=None):
    cache.clear()  # the API's rate limit counts in the cache; time travel confuses its window
    return getattr(Client(), method)(
        f"/api/v1/{path}",
        data=None if body is None else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def sweep(at: datetime, evaluate: bool = False) -> None:
    with time_machine.travel(at, tick=False):
        if evaluate:
            evaluate_due(now=at)
        process_status_changes(now=at)
        advance_escalations(now=at)


def change(kpi: Kpi, at: datetime, new: str = "off_track", old: str = "on_track") -> StatusChange:
    return StatusChange.objects.create(
        organization=kpi.organization, kpi=kpi, old=old, new=new, value=640, reason=f"{new} for the test", changed_at=at
    )


def reviews(kpi: Kpi) -> list[tuple]:
    """Each review of `kpi`: when it opened, its signals' upstream keys (throttled ones marked), its answer."""
    return [
        (r.opened_at, [d.upstream.key + (" (throttled)" if d.throttled else "") for d in r.signals.all()], r.answer)
        for r in DependencyReview.objects.filter(kpi=kpi).order_by("opened_at").prefetch_related("signals__upstream")
    ]


def tasks(kind: str, of: str = "") -> list[tuple]:
    """Tasks of a kind; of="review" keeps those of dependency reviews, of="workstream" those of workstreams."""
    qs = Task.objects.filter(kind=kind).select_related("assignee__user", "kpi").order_by("due_at", "id")
    if of:
        qs = qs.filter(review__isnull=of != "review")
    return [(t.assignee.user.email, t.kpi.key, t.due_at, t.level, t.escalation_pass, t.state) for t in qs]


def notified(kind: str) -> list[tuple]:
    return sorted(
        (n.recipient.user.email, n.created_at)
        for n in Notification.objects.filter(kind=kind, channel="in_app").select_related("recipient__user")
    )


# --- the founding story -------------------------------------------------------------------------


def test_a_marketing_lead_surge_reaches_supply_chain_and_impact_opens_a_preventive_workstream(graph):
    """The data arrives through the API, the real sweeps run with time travel, and Supply Chain's owner gets one
    review task within the sweep that saw the surge, listing both of their KPIs that depend on the leads."""
    on_time = KpiFactory(
        organization=graph.org,
        key="supply.otif",
        name="On-time in full",
        team=graph.kpis["supply.fill_rate"].team,
        owner=graph.planner,
        unit="%",
        thresholds={"warning": 95, "critical": 90},
        pending_for=timedelta(0),
        escalation="supply",
    )
    dependency_create(actor=None, upstream=graph.kpis["marketing.leads"], downstream=on_time, kind="drives_demand")
    noon = T0 + 4 * HOUR
    history = [{"kpi": "marketing.leads", "at": (noon - d * DAY).isoformat(), "value": 100} for d in range(1, 15)] + [
        {"kpi": key, "at": (noon - d * DAY).isoformat(), "value": 97} for d in range(1, 8) for key in SUPPLY
    ]
    with time_machine.travel(T0, tick=False):
        assert call(graph.token, "post", "measurements", {"measurements": history}).json() == {"accepted": 28}
    sweep(T0, evaluate=True)  # 700 leads in each of the last two weeks: no surge, all on track
    assert not SurgeSignal.objects.exists() and not Task.objects.exists()

    # Today's leads arrive at noon: 600 + 415 = 1,015 this week against 700 the week before, +45%.
    with time_machine.travel(noon, tick=False):
        today = [{"kpi": "marketing.leads", "at": noon.isoformat(), "value": 415}]
        assert call(graph.token, "post", "measurements", {"measurements": today}).status_code == 200
    sweep(noon, evaluate=True)
    assert tasks("dependency_review") == [("sam@acme.test", "supply.fill_rate", noon + DAY, 0, 0, "open")]
    sweep(noon + 5 * MINUTE, evaluate=True)  # nothing new: a surge is signalled once per window
    assert Task.objects.filter(kind="dependency_review").count() == 1
    assert notified("dependency_review") == [("sam@acme.test", noon)]
    message = Notification.objects.get(kind="dependency_review", channel="in_app")
    assert message.subject == "Marketing leads changed: does it affect Fill rate and On-time in full?"
    assert "Value 1015; trend +45% leads over 7 days" in message.body
    assert SurgeSignal.objects.get().processed_at == noon
    assert Kpi.objects.get(key="marketing.leads").status == "on_track"  # a surge, not a breach

    [listed] = call(graph.planner_token, "get", "tasks?kind=dependency_review").json()
    assert [(r["kpi"], r["state"], r["due_at"]) for r in listed["reviews"]] == [
        ("supply.fill_rate", "open", "2026-11-03T12:00:00Z"),
        ("supply.otif", "open", "2026-11-03T12:00:00Z"),
    ]
    assert listed["review"] == listed["reviews"][0]
    for review in listed["reviews"]:
        [signal] = review["signals"]
        assert (signal["upstream"], signal["kind"], signal["value"], signal["trend"]) == (
            "marketing.leads",
            "surge",
            1015,
            "+45% leads over 7 days",
        )
        assert signal["cause"] == "Marketing leads surged: +45% leads over 7 days (700 -> 1015)"
    [cause] = upstream_causes(org=graph.org, kpi=graph.kpis["supply.fill_rate"])
    assert (cause.upstream.key, cause.signal.trend, cause.throttled) == (
        "marketing.leads",
        "+45% leads over 7 days",
        False,
    )

    answer = f"tasks/{listed['id']}/answer"
    with time_machine.travel(noon + 2 * HOUR, tick=False):
        unnamed = call(graph.planner_token, "post", answer, {"impact": True})
        assert (unnamed.status_code, unnamed.json()["errors"][0]["path"]) == (422, "kpi")
        answered = call(graph.planner_token, "post", answer, {"impact": True, "kpi": "supply.fill_rate"})
        assert answered.status_code == 200, answered.content
        assert answered.json()["state"] == "open"  # On-time in full is still to be answered
        assert [r["state"] for r in answered.json()["reviews"]] == ["impact", "open"]
    with time_machine.travel(noon + 3 * HOUR, tick=False):
        body = {"impact": False, "kpi": "supply.otif", "reason": "OTIF is capped by carriers, not by demand"}
        done = call(graph.planner_token, "post", answer, body)
    assert done.status_code == 200, done.content
    assert (done.json()["state"], [r["state"] for r in done.json()["reviews"]]) == ("done", ["impact", "no_impact"])
    [ws] = call(graph.token, "get", "workstreams?state=open").json()
    assert (ws["kpi"], ws["kind"], ws["opened_at"], ws["id"]) == (
        "supply.fill_rate",
        "preventive",
        "2026-11-02T14:00:00Z",
        answered.json()["reviews"][0]["workstream"],
    )
    # The preventive workstream follows Supply's own policy: the owner's path is due in 2 days, then its lead.
    assert tasks("mitigation") == [("sam@acme.test", "supply.fill_rate", noon + 2 * HOUR + 2 * DAY, 0, 0, "open")]
    sweep(noon + 2 * HOUR + 2 * DAY)
    assert tasks("escalation") == [("sue@acme.test", "supply.fill_rate", noon + 2 * HOUR + 3 * DAY, 1, 1, "open")]
    assert not Task.objects.filter(review__isnull=False, kind="escalation").exists()  # both reviews were answered


# --- grouping and throttling --------------------------------------------------------------------


def test_signals_within_ten_minutes_form_one_review_listing_every_signal(graph):
    k = graph.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    change(k["marketing.promos"], T0 + 9 * MINUTE + timedelta(seconds=59))  # within 10 minutes of the first
    sweep(T0 + 10 * MINUTE)
    change(k["sales.orders"], T0 + 10 * MINUTE)  # 10 minutes after the first: a review of its own
    sweep(T0 + 10 * MINUTE)
    assert reviews(k["supply.fill_rate"]) == [
        (T0, ["marketing.leads", "marketing.promos"], ""),
        (T0 + 10 * MINUTE, ["sales.orders"], ""),
    ]
    assert [t[:3] for t in tasks("dependency_review")] == [
        ("sam@acme.test", "supply.fill_rate", T0 + DAY),  # due by the policy of the upstream that opened it
        ("sam@acme.test", "supply.fill_rate", T0 + 10 * MINUTE + DAY),
    ]
    assert len(notified("dependency_review")) == 2


def test_simultaneous_signals_in_one_sweep_form_one_review(graph):
    k = graph.kpis
    for key in ("marketing.leads", "marketing.promos", "sales.orders"):
        change(k[key], T0)
    sweep(T0)
    assert reviews(k["supply.fill_rate"]) == [(T0, ["marketing.leads", "marketing.promos", "sales.orders"], "")]
    assert len(tasks("dependency_review")) == 1


def test_a_second_signal_inside_the_lag_is_recorded_but_opens_no_review_one_after_it_does(graph):
    k = graph.kpis
    change(k["marketing.leads"], T0, new="at_risk")
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    with time_machine.travel(T0 + HOUR, tick=False):
        dependency_review_answer(task=task, by=graph.planner, impact=False, reason="Stock covers two weeks")
    change(k["marketing.leads"], T0 + DAY, new="off_track", old="at_risk")  # inside the 3-day lag
    sweep(T0 + DAY)
    change(k["marketing.leads"], T0 + 2 * DAY, new="on_track", old="off_track")
    change(k["marketing.leads"], T0 + 3 * DAY, new="at_risk")  # 3 days after the review opened: a new one
    sweep(T0 + 3 * DAY)
    assert reviews(k["supply.fill_rate"]) == [
        (T0, ["marketing.leads", "marketing.leads (throttled)"], "no_impact"),
        (T0 + 3 * DAY, ["marketing.leads"], ""),
    ]
    assert len(tasks("dependency_review")) == 2
    # The throttled signal is visible with the rest.
    causes = upstream_causes(org=graph.org, kpi=k["supply.fill_rate"])
    assert [(c.at, c.throttled) for c in causes] == [(T0 + 3 * DAY, False), (T0 + DAY, True), (T0, False)]


def test_an_edge_without_lag_throttles_for_24_hours(graph):
    k = graph.kpis
    change(k["marketing.promos"], T0)
    sweep(T0)
    change(k["marketing.promos"], T0 + DAY - MINUTE, new="stale", old="off_track")
    sweep(T0 + DAY - MINUTE)
    change(k["marketing.promos"], T0 + DAY, new="off_track", old="stale")
    sweep(T0 + DAY)
    assert reviews(k["supply.fill_rate"]) == [
        (T0, ["marketing.promos", "marketing.promos (throttled)"], ""),
        (T0 + DAY, ["marketing.promos"], ""),
    ]


def test_only_changes_into_a_breach_or_stale_and_surges_signal(graph):
    k = graph.kpis
    change(k["marketing.leads"], T0, new="on_track", old="no_data")
    change(k["marketing.promos"], T0, new="no_data", old="on_track")
    sweep(T0)
    assert not DependencySignal.objects.exists() and not Task.objects.exists()
    change(k["supply.fill_rate"], T0 + HOUR)  # a KPI nothing depends on: no signal either
    sweep(T0 + HOUR)
    assert not DependencySignal.objects.exists()
    assert StatusChange.objects.filter(processed_at=None).count() == 0


# --- one task per downstream owner ------------------------------------------------------------


@pytest.fixture
def owner_of_two(graph):
    """Sam owns a second KPI downstream: On-time in full depends on the leads (lag 3 days) and the promotions."""
    k = graph.kpis
    otif = KpiFactory(
        organization=graph.org,
        key="supply.otif",
        name="On-time in full",
        team=k["supply.fill_rate"].team,
        owner=graph.planner,
        pending_for=timedelta(0),
        escalation="supply",
    )
    dependency_create(actor=None, upstream=k["marketing.leads"], downstream=otif, kind="drives_demand", lag=3 * DAY)
    dependency_create(actor=None, upstream=k["marketing.promos"], downstream=otif, kind="drives_demand")
    k["supply.otif"] = otif
    return graph


def review_tasks() -> list[tuple]:
    """Each review task: assignee, due, state, and each review it lists (KPI, its signals' upstream keys, answer)."""
    listed = Task.objects.filter(kind="dependency_review").select_related("assignee__user")
    listed = listed.order_by("created_at", "assignee__user__email", "id")
    return [
        (
            t.assignee.user.email,
            t.due_at,
            t.state,
            [(r.kpi.key, [d.upstream.key for d in r.signals.order_by("at", "id")], r.answer) for r in t.review_parts],
        )
        for t in listed.prefetch_related("reviews__kpi")
    ]


def test_an_owners_two_kpis_reached_five_minutes_apart_share_one_task(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    change(k["marketing.promos"], T0 + 5 * MINUTE)  # reaches Fill rate again, and On-time in full
    sweep(T0 + 5 * MINUTE)
    assert review_tasks() == [
        (
            "sam@acme.test",
            T0 + DAY,
            "open",
            [
                ("supply.fill_rate", ["marketing.leads", "marketing.promos"], ""),
                ("supply.otif", ["marketing.leads", "marketing.promos"], ""),
            ],
        )
    ]
    assert notified("dependency_review") == [("sam@acme.test", T0)]  # the task's one notification
    # Each KPI's review keeps its own due time and escalation, by the policy of the upstream that opened it.
    assert sorted(DependencyReview.objects.values_list("kpi__key", "due_at", "next_escalation_at")) == [
        ("supply.fill_rate", T0 + DAY, T0 + DAY),
        ("supply.otif", T0 + DAY, T0 + DAY),
    ]


def test_my_work_names_every_kpi_of_a_shared_review_task_and_links_the_inbox(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    html = owner_of_two.client(owner_of_two.planner).get(reverse("scorecards:my_work", args=[owner_of_two.org.slug]))
    inbox = reverse("escalations:task_inbox", args=[owner_of_two.org.slug])
    assert f'<a href="{inbox}">Fill rate and 1 more</a>' in html.content.decode()


def test_a_second_kpi_reached_eleven_minutes_later_gets_a_task_of_its_own(owner_of_two):
    k = owner_of_two.kpis
    Dependency.objects.filter(upstream=k["marketing.leads"], downstream=k["supply.otif"]).delete()
    change(k["marketing.leads"], T0)  # Fill rate only
    sweep(T0)
    change(k["marketing.promos"], T0 + 11 * MINUTE)  # Fill rate and On-time in full, outside the first window
    sweep(T0 + 11 * MINUTE)
    assert review_tasks() == [
        ("sam@acme.test", T0 + DAY, "open", [("supply.fill_rate", ["marketing.leads"], "")]),
        (
            "sam@acme.test",
            T0 + 11 * MINUTE + DAY,
            "open",
            [("supply.fill_rate", ["marketing.promos"], ""), ("supply.otif", ["marketing.promos"], "")],
        ),
    ]
    assert notified("dependency_review") == [("sam@acme.test", T0), ("sam@acme.test", T0 + 11 * MINUTE)]


def test_the_window_counts_from_the_tasks_first_review_and_takes_a_signal_from_before_it(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.promos"], T0 + 9 * MINUTE)
    sweep(T0 + 9 * MINUTE)
    change(k["sales.orders"], T0)  # decided earlier, processed later: within 10 minutes of the task's first review
    sweep(T0 + 10 * MINUTE)
    change(k["marketing.leads"], T0 + 19 * MINUTE)  # 10 minutes after the task's first review: a new task
    sweep(T0 + 20 * MINUTE)
    assert [(t[1], [(key, ups) for key, ups, _ in t[3]]) for t in review_tasks()] == [
        (
            T0 + 9 * MINUTE + DAY,
            [("supply.fill_rate", ["sales.orders", "marketing.promos"]), ("supply.otif", ["marketing.promos"])],
        ),
        (
            T0 + 19 * MINUTE + DAY,
            [("supply.fill_rate", ["marketing.leads"]), ("supply.otif", ["marketing.leads"])],
        ),
    ]


def test_a_second_owner_gets_a_task_of_their_own(owner_of_two):
    t, k = owner_of_two, owner_of_two.kpis
    picking = KpiFactory(organization=t.org, key="ops.picking", name="Picking", team=t.team, owner=t.member)
    dependency_create(actor=None, upstream=k["marketing.leads"], downstream=picking, kind="drives_demand")
    change(k["marketing.leads"], T0)
    sweep(T0)
    assert review_tasks() == [
        ("member@acme.test", T0 + DAY, "open", [("ops.picking", ["marketing.leads"], "")]),
        (
            "sam@acme.test",
            T0 + DAY,
            "open",
            [("supply.fill_rate", ["marketing.leads"], ""), ("supply.otif", ["marketing.leads"], "")],
        ),
    ]
    assert notified("dependency_review") == [("member@acme.test", T0), ("sam@acme.test", T0)]


def test_throttling_stays_per_kpi_and_upstream_inside_a_shared_task(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.promos"], T0)  # Fill rate and On-time in full: no lag, so 24 h of throttling each
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    fill = DependencyReview.objects.get(kpi=k["supply.fill_rate"])
    with time_machine.travel(T0 + HOUR, tick=False):
        dependency_review_answer(task=task, by=owner_of_two.planner, impact=False, reason="Small", review_id=fill.pk)
    change(k["marketing.promos"], T0 + 3 * HOUR, new="stale", old="off_track")  # throttled for both KPIs
    sweep(T0 + 3 * HOUR)
    change(k["marketing.promos"], T0 + DAY, new="off_track", old="stale")  # 24 h later: reviewed again
    sweep(T0 + DAY)
    promos = ["marketing.promos", "marketing.promos"]
    assert review_tasks() == [
        ("sam@acme.test", T0 + DAY, "open", [("supply.fill_rate", promos, "no_impact"), ("supply.otif", promos, "")]),
        (
            "sam@acme.test",
            T0 + 2 * DAY,
            "open",
            [("supply.fill_rate", ["marketing.promos"], ""), ("supply.otif", ["marketing.promos"], "")],
        ),
    ]
    assert list(DependencyReviewSignal.objects.filter(throttled=True).values_list("at", flat=True)) == [
        T0 + 3 * HOUR,
        T0 + 3 * HOUR,
    ]


# --- per-KPI answers in a shared task ---------------------------------------------------------


def test_each_kpi_of_a_shared_task_is_answered_on_its_own(owner_of_two):
    k, sam = owner_of_two.kpis, owner_of_two.planner
    change(k["marketing.leads"], T0)
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    fill, otif = (DependencyReview.objects.get(kpi=k[key]) for key in SUPPLY)
    with time_machine.travel(T0 + HOUR, tick=False):
        with pytest.raises(ValidationError) as unnamed:
            dependency_review_answer(task=task, by=sam, impact=True, reason="")
        assert unnamed.value.message_dict == {
            "kpi": ["This task reviews several KPIs; say which one you answer for (supply.fill_rate, supply.otif)."]
        }
        dependency_review_answer(task=task, by=sam, impact=True, reason="Promo stock", review_id=fill.pk)
    task.refresh_from_db()
    assert (task.state, task.due_at) == ("open", T0 + DAY)
    assert Workstream.objects.get(kind="preventive").kpi == k["supply.fill_rate"]  # impact on Fill rate only
    with time_machine.travel(T0 + 2 * HOUR, tick=False):
        with pytest.raises(ValidationError):
            dependency_review_answer(task=task, by=sam, impact=False, reason=" ", review_id=otif.pk)
        with pytest.raises(ValidationError):  # answered already
            dependency_review_answer(task=task, by=sam, impact=False, reason="Twice", review_id=fill.pk)
        dependency_review_answer(task=task, by=sam, impact=False, reason="Carriers, not demand", review_id=otif.pk)
    task.refresh_from_db()
    assert (task.state, task.done_at) == ("done", T0 + 2 * HOUR)
    assert review_tasks()[0][3] == [
        ("supply.fill_rate", ["marketing.leads"], "impact"),
        ("supply.otif", ["marketing.leads"], "no_impact"),
    ]
    assert not Workstream.objects.filter(kpi=k["supply.otif"]).exists()
    # The leads' own episode hears each answer of its participant.
    upstream = Workstream.objects.get(kpi=k["marketing.leads"])
    assert list(upstream.events.filter(verb="review_answered").values_list("text", flat=True)) == [
        "Sam Supply answered the dependency review of Fill rate: impact: a preventive workstream is open",
        "Sam Supply answered the dependency review of On-time in full: no impact: Carriers, not demand",
    ]
    answers = AuditEvent.objects.filter(verb="dependency_review.answered").order_by("id")
    assert [a.after["impact"] for a in answers] == [True, False]


def test_only_the_unanswered_kpi_of_a_shared_task_escalates(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    fill = DependencyReview.objects.get(kpi=k["supply.fill_rate"])
    with time_machine.travel(T0 + HOUR, tick=False):
        dependency_review_answer(task=task, by=owner_of_two.planner, impact=False, reason="Buffer", review_id=fill.pk)
    sweep(T0 + DAY)
    # Marketing's policy resolved against On-time in full: Supply's team lead, a day after the review fell due.
    assert tasks("escalation", of="review") == [("sue@acme.test", "supply.otif", T0 + 2 * DAY, 1, 1, "open")]
    assert Task.objects.get(pk=task.pk).state == "open"
    escalation = Task.objects.get(kind="escalation", review__isnull=False)
    with time_machine.travel(T0 + DAY + HOUR, tick=False):
        answered = call(owner_of_two.lead_token, "post", f"tasks/{escalation.pk}/answer", {"impact": True})
    assert answered.status_code == 200, answered.content
    assert [(r["kpi"], r["state"]) for r in answered.json()["reviews"]] == [("supply.otif", "impact")]
    # The escalation target answered the last open KPI: the owner's task is done too.
    assert [Task.objects.get(pk=pk).state for pk in (task.pk, escalation.pk)] == ["done", "done"]


def test_an_owner_change_moves_one_kpis_review_to_a_task_of_the_new_owner(owner_of_two):
    k = owner_of_two.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    ownership_transfer_direct(kpi=k["supply.otif"], to_owner=owner_of_two.member, actor=None, reason="Reorganisation")
    sweep(T0 + HOUR)
    assert review_tasks() == [
        ("sam@acme.test", T0 + DAY, "open", [("supply.fill_rate", ["marketing.leads"], "")]),
        ("member@acme.test", T0 + DAY, "open", [("supply.otif", ["marketing.leads"], "")]),  # the clock runs on
    ]
    assert notified("dependency_review") == [("member@acme.test", T0 + HOUR), ("sam@acme.test", T0)]
    sweep(T0 + 2 * HOUR)  # nothing more moves
    assert Task.objects.filter(kind="dependency_review").count() == 2


# --- participants -------------------------------------------------------------------------------


def test_the_upstream_workstream_lists_the_downstream_owners_asked_to_review(graph):
    k = graph.kpis
    extra = KpiFactory(organization=graph.org, key="ops.picking", name="Picking", team=graph.team, owner=graph.member)
    dependency_create(actor=None, upstream=k["marketing.leads"], downstream=extra, kind="drives_demand")
    change(k["marketing.leads"], T0)
    sweep(T0)
    ws = Workstream.objects.get(kpi=k["marketing.leads"])
    [asked] = ws.events.filter(verb="reviews_requested")
    assert (asked.at, asked.text) == (
        T0,
        f"Asked to review the impact downstream: Sam Supply (Fill rate), {graph.member.user.name} (Picking)",
    )
    assert {m.pk for m in review_participants(workstream=ws)} == {graph.planner.pk, graph.member.pk}
    with time_machine.travel(T0 + HOUR, tick=False):
        task = Task.objects.get(kind="dependency_review", assignee=graph.planner)
        dependency_review_answer(task=task, by=graph.planner, impact=False, reason="Buffer stock")
    assert ws.events.get(verb="review_answered").text == (
        "Sam Supply answered the dependency review of Fill rate: no impact: Buffer stock"
    )


# --- answers and permissions --------------------------------------------------------------------


def test_only_the_assignee_answers_and_no_impact_needs_a_reason(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    with time_machine.travel(T0 + HOUR, tick=False):
        _, member_token = api_token_create(org=graph.org, actor=None, name="x", membership=graph.member)
        refused = call(member_token, "post", f"tasks/{task.pk}/answer", {"impact": True})
        assert refused.status_code == 403
        assert call(graph.token, "post", f"tasks/{task.pk}/answer", {"impact": True}).status_code == 403  # org token
        no_reason = call(graph.planner_token, "post", f"tasks/{task.pk}/answer", {"impact": False, "reason": " "})
        assert no_reason.status_code == 422
        assert no_reason.json()["errors"][0]["path"] == "reason"
        assert call(graph.planner_token, "post", f"tasks/{task.pk}/answer", {"impact": "yes"}).status_code == 422
        mitigation = Task.objects.get(kind="mitigation")  # the upstream owner's task: not a review
        with pytest.raises(ValidationError):
            dependency_review_answer(task=mitigation, by=graph.marketer, impact=True, reason="")
        ok = call(graph.planner_token, "post", f"tasks/{task.pk}/answer", {"impact": False, "reason": "Buffer stock"})
        assert ok.status_code == 200, ok.content
        again = call(graph.planner_token, "post", f"tasks/{task.pk}/answer", {"impact": True})
        assert again.status_code == 422
    review = DependencyReview.objects.get()
    assert (review.answer, review.answer_reason, review.answered_by, review.answered_at) == (
        "no_impact",
        "Buffer stock",
        graph.planner.user,
        T0 + HOUR,
    )
    assert review.next_escalation_at is None and review.workstream is None
    assert not Workstream.objects.filter(kpi=graph.kpis["supply.fill_rate"]).exists()
    assert AuditEvent.objects.filter(verb="dependency_review.answered", actor=graph.planner.user).count() == 1


def test_impact_joins_the_downstream_kpis_open_workstream_instead_of_opening_a_second(graph):
    k = graph.kpis
    change(k["supply.fill_rate"], T0 - HOUR)
    change(k["marketing.leads"], T0)
    sweep(T0)
    with time_machine.travel(T0 + HOUR, tick=False):
        task = Task.objects.get(kind="dependency_review")
        review = dependency_review_answer(task=task, by=graph.planner, impact=True, reason="")
    ws = Workstream.objects.get(kpi=k["supply.fill_rate"])
    assert (ws.kind, review.workstream) == ("mitigation", ws)
    assert ws.events.filter(verb="dependency_impact").count() == 1


def test_a_breach_turns_the_preventive_workstream_into_a_mitigation(graph):
    k = graph.kpis
    change(k["marketing.promos"], T0)  # Promotions' episode is open: the preventive one waits on it
    sweep(T0)
    with time_machine.travel(T0 + HOUR, tick=False):
        review = dependency_review_answer(
            task=Task.objects.get(kind="dependency_review"), by=graph.planner, impact=True, reason="Promo volume"
        )
    ws = review.workstream
    assert (ws.kind, ws.waiting_on.kpi.key) == ("preventive", "marketing.promos")
    change(k["supply.fill_rate"], T0 + 2 * HOUR)
    sweep(T0 + 2 * HOUR)
    ws.refresh_from_db()
    assert (ws.kind, ws.severity, Workstream.objects.filter(kpi=k["supply.fill_rate"]).count()) == (
        "mitigation",
        "off_track",
        1,
    )


def test_an_escalation_target_may_answer_from_their_own_task(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    sweep(T0 + DAY)
    escalation = Task.objects.get(kind="escalation", review__isnull=False)
    assert escalation.assignee == graph.supply_lead
    with time_machine.travel(T0 + DAY + HOUR, tick=False):
        answered = call(graph.lead_token, "post", f"tasks/{escalation.pk}/answer", {"impact": True})
    assert answered.status_code == 200, answered.content
    assert set(Task.objects.filter(review__isnull=False).values_list("state", flat=True)) == {"done"}
    # The owner did not answer, so the owner hears of the preventive workstream.
    assert notified("mitigation") == [("mia@acme.test", T0), ("sam@acme.test", T0 + DAY + HOUR)]


def test_an_owner_change_moves_the_open_review_task(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    ownership_transfer_direct(
        kpi=graph.kpis["supply.fill_rate"], to_owner=graph.member, actor=None, reason="Reorganisation"
    )
    sweep(T0 + HOUR)
    assert [t[0] for t in tasks("dependency_review")] == ["member@acme.test"]
    assert notified("dependency_review") == [("member@acme.test", T0 + HOUR), ("sam@acme.test", T0)]


# --- escalation of an unanswered review ---------------------------------------------------------


def test_an_unanswered_review_escalates_level_by_level_at_exact_times(graph):
    change(graph.kpis["marketing.leads"], T0)
    for at in (T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY):
        sweep(at)
    review_tasks = tasks("escalation", of="review")
    # The upstream's policy, resolved against the downstream KPI: Supply's team lead, then the executives.
    assert review_tasks == [
        ("sue@acme.test", "supply.fill_rate", T0 + 2 * DAY, 1, 1, "open"),
        ("exec@acme.test", "supply.fill_rate", T0 + 3 * DAY, 2, 1, "open"),
    ]
    review = DependencyReview.objects.get()
    assert (review.exhausted_at, review.next_escalation_at) == (T0 + 3 * DAY, None)
    assert [(h["verb"], h["at"]) for h in review.history] == [
        ("escalated", (T0 + DAY).isoformat()),
        ("escalated", (T0 + 2 * DAY).isoformat()),
        ("exhausted", (T0 + 3 * DAY).isoformat()),
    ]
    review_escalations = Notification.objects.filter(kind="escalation", dedup_key__contains=":review")
    assert sorted((n.recipient.user.email, n.created_at) for n in review_escalations.filter(channel="in_app")) == [
        ("exec@acme.test", T0 + 2 * DAY),
        ("sue@acme.test", T0 + DAY),
    ]
    exhausted = Notification.objects.filter(kind="exhausted", dedup_key__contains=":review", channel="in_app")
    assert [(n.recipient.user.email, n.created_at) for n in exhausted] == [("admin@acme.test", T0 + 3 * DAY)]
    assert review_state(review) == "Unanswered, escalation exhausted: the organization's admins were told"


def test_the_downstream_owner_who_must_answer_is_never_the_reviews_escalation(graph):
    """Supply's planner owns the fill rate and leads Supply Chain: the review's level 1 (the downstream team lead)
    names only the person who must answer it, so it is skipped, and the executives get it."""
    team_update(team=graph.kpis["supply.fill_rate"].team, actor=graph.admin.user, lead=graph.planner)
    change(graph.kpis["marketing.leads"], T0)
    for at in (T0, T0 + DAY, T0 + 2 * DAY):
        sweep(at)
    assert tasks("escalation", of="review") == [("exec@acme.test", "supply.fill_rate", T0 + 2 * DAY, 2, 1, "open")]
    review = DependencyReview.objects.get()
    assert review.history[0] == {
        "at": (T0 + DAY).isoformat(),
        "verb": "level_skipped",
        "text": "Level 1 (team lead) skipped: Sam Supply must answer this review",
    }


def test_a_late_sweep_catches_up_each_review_step_at_its_own_time(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    sweep(T0 + 10 * DAY)
    sweep(T0 + 11 * DAY)
    review_tasks = [t[2:5] for t in tasks("escalation", of="review")]
    assert review_tasks == [(T0 + 2 * DAY, 1, 1), (T0 + 3 * DAY, 2, 1)]
    assert DependencyReview.objects.get().exhausted_at == T0 + 3 * DAY
    assert Notification.objects.filter(kind="exhausted", dedup_key__contains=":review", channel="in_app").count() == 1


def test_acknowledging_a_review_escalation_pauses_it_then_the_same_level_again(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    sweep(T0 + DAY)
    task = Task.objects.get(kind="escalation", review__isnull=False)
    with time_machine.travel(T0 + DAY + HOUR, tick=False):
        task_acknowledge(task=task, by=graph.supply_lead)
    assert DependencyReview.objects.get().next_escalation_at == T0 + DAY + 5 * HOUR
    sweep(T0 + DAY + 5 * HOUR)
    sweep(T0 + 2 * DAY + 5 * HOUR)
    assert [(t[0], t[2]) for t in tasks("escalation", of="review")] == [
        ("sue@acme.test", T0 + 2 * DAY + 5 * HOUR),  # acknowledged (due with the next level), then superseded
        ("sue@acme.test", T0 + 2 * DAY + 5 * HOUR),
        ("exec@acme.test", T0 + 3 * DAY + 5 * HOUR),
    ]


def test_answering_stops_the_reviews_escalation(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    sweep(T0 + DAY)
    with time_machine.travel(T0 + DAY + HOUR, tick=False):
        dependency_review_answer(
            task=Task.objects.get(kind="dependency_review"), by=graph.planner, impact=False, reason="Covered"
        )
    sweep(T0 + 5 * DAY)
    assert [t[3:] for t in tasks("escalation", of="review")] == [(1, 1, "done")]
    assert DependencyReview.objects.get().exhausted_at is None


# --- inhibition ---------------------------------------------------------------------------------


@pytest.fixture
def inhibited(graph):
    """Orders (upstream) off track at T0; Fill rate (downstream, Supply's policy: 2 days, then its lead after 1
    day) off track at T0 + 1h, within Orders' episode."""
    k = graph.kpis
    change(k["sales.orders"], T0)
    sweep(T0)
    change(k["supply.fill_rate"], T0 + HOUR)
    sweep(T0 + HOUR)
    graph.upstream = Workstream.objects.get(kpi=k["sales.orders"])
    graph.downstream = Workstream.objects.get(kpi=k["supply.fill_rate"])
    return graph


def test_a_downstream_episode_waits_while_its_upstream_is_open(inhibited):
    ws = inhibited.downstream
    assert ws.waiting_on == inhibited.upstream
    assert escalation_state(ws).startswith("Waiting on upstream: Orders has an open episode")
    for at in (T0 + 2 * DAY + HOUR, T0 + 4 * DAY, T0 + 9 * DAY):
        sweep(at)
    assert [t for t in tasks("escalation", of="workstream") if t[1] == "supply.fill_rate"] == []
    ws.refresh_from_db()
    assert (ws.level, ws.exhausted_at) == (0, None)
    # Its upstream escalates as usual (Marketing's policy: 1 day, then Orders' team lead, who owns Orders and so is
    # skipped, then the executives).
    assert [t[0] for t in tasks("escalation", of="workstream") if t[1] == "sales.orders"][:1] == ["exec@acme.test"]


@pytest.mark.parametrize(
    ("resolved", "first_step"),
    [
        (T0 + 5 * DAY, T0 + 5 * DAY),  # after the downstream's own deadline (T0 + 2d 1h): escalation starts then
        (T0 + DAY, T0 + 2 * DAY + HOUR),  # before it: at its own deadline, never earlier
    ],
)
def test_when_the_upstream_recovers_the_downstream_escalation_starts_then(inhibited, resolved, first_step):
    sweep(T0 + DAY - MINUTE)
    change(inhibited.kpis["sales.orders"], resolved, new="on_track", old="off_track")
    with time_machine.travel(resolved, tick=False):
        process_status_changes(now=resolved)
    ws = Workstream.objects.get(pk=inhibited.downstream.pk)
    assert (ws.waiting_on, ws.next_escalation_at) == (None, first_step)
    assert ws.events.filter(verb="upstream_resolved").get().at == resolved
    if first_step > resolved:
        sweep(first_step - MINUTE)
        assert [t for t in tasks("escalation", of="workstream") if t[1] == "supply.fill_rate"] == []
    sweep(first_step)
    assert [t for t in tasks("escalation", of="workstream") if t[1] == "supply.fill_rate"] == [
        ("sue@acme.test", "supply.fill_rate", first_step + DAY, 1, 1, "open")
    ]
    episode = Notification.objects.filter(kind="escalation", channel="in_app", workstream=inhibited.downstream)
    assert [(n.recipient.user.email, n.created_at) for n in episode] == [("sue@acme.test", first_step)]


def test_an_executives_close_of_the_upstream_also_releases_the_downstream(inhibited):
    with time_machine.travel(T0 + 3 * DAY, tick=False):
        workstream_close(
            workstream=inhibited.upstream, by=inhibited.executive, resolution="accepted_risk", reason="Seasonal"
        )
    ws = Workstream.objects.get(pk=inhibited.downstream.pk)
    assert (ws.waiting_on, ws.next_escalation_at) == (None, T0 + 3 * DAY)


def test_a_downstream_that_recovered_first_is_left_alone(inhibited):
    change(inhibited.kpis["supply.fill_rate"], T0 + DAY, new="on_track", old="off_track")
    change(inhibited.kpis["sales.orders"], T0 + 2 * DAY, new="on_track", old="off_track")
    sweep(T0 + 2 * DAY)
    ws = Workstream.objects.get(pk=inhibited.downstream.pk)
    assert (ws.resolution, ws.next_escalation_at) == ("recovered", None)
    assert not ws.events.filter(verb="upstream_resolved").exists()


def test_another_open_upstream_keeps_the_downstream_waiting(inhibited):
    k = inhibited.kpis
    change(k["marketing.promos"], T0 + 30 * MINUTE)  # a second upstream of Fill rate, also before it broke
    sweep(T0 + 30 * MINUTE)
    change(k["sales.orders"], T0 + DAY, new="on_track", old="off_track")
    sweep(T0 + DAY)
    ws = Workstream.objects.get(pk=inhibited.downstream.pk)
    assert ws.waiting_on.kpi.key == "marketing.promos"
    change(k["marketing.promos"], T0 + 4 * DAY, new="on_track", old="off_track")
    sweep(T0 + 4 * DAY)
    ws.refresh_from_db()
    assert (ws.waiting_on, ws.level, ws.next_escalation_at) == (None, 1, T0 + 5 * DAY)  # level 1 at T0 + 4d


def test_a_downstream_episode_that_opened_first_is_not_inhibited(graph):
    k = graph.kpis
    change(k["supply.fill_rate"], T0)
    change(k["sales.orders"], T0 + HOUR)
    sweep(T0 + HOUR)
    sweep(T0 + 2 * DAY)
    ws = Workstream.objects.get(kpi=k["supply.fill_rate"])
    assert ws.waiting_on is None
    assert [t[:4] for t in tasks("escalation", of="workstream") if t[1] == "supply.fill_rate"] == [
        ("sue@acme.test", "supply.fill_rate", T0 + 3 * DAY, 1)
    ]


def test_an_upstream_that_breaks_in_the_same_sweep_still_holds_the_downstream(graph):
    k = graph.kpis
    # Same evaluation time; the downstream's change is processed first (lower id), before the upstream opens.
    change(k["supply.fill_rate"], T0)
    change(k["sales.orders"], T0)
    sweep(T0)
    sweep(T0 + 3 * DAY)
    ws = Workstream.objects.get(kpi=k["supply.fill_rate"])
    assert ws.waiting_on.kpi.key == "sales.orders"
    assert [t for t in tasks("escalation", of="workstream") if t[1] == "supply.fill_rate"] == []


# --- tenancy and scale --------------------------------------------------------------------------


def test_signals_never_cross_organizations(graph, stranger_tenant):
    # The service refuses such an edge; one written behind its back is ignored by the sweep too.
    Dependency.objects.create(
        organization=graph.org, upstream=graph.kpis["marketing.leads"], downstream=stranger_tenant.kpi, kind="blocks"
    )
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    assert not Task.objects.filter(organization=stranger_tenant.org).exists()
    assert not Notification.objects.filter(organization=stranger_tenant.org).exists()
    assert not DependencyReviewSignal.objects.filter(kpi=stranger_tenant.kpi).exists()
    task = Task.objects.get(kind="dependency_review")
    _, stranger_token = api_token_create(
        org=stranger_tenant.org, actor=None, name="x", membership=stranger_tenant.executive
    )
    with time_machine.travel(T0 + HOUR, tick=False):
        assert call(stranger_token, "post", f"tasks/{task.pk}/answer", {"impact": True}).status_code == 404
        with pytest.raises(PermissionDenied):
            dependency_review_answer(task=task, by=stranger_tenant.executive, impact=True, reason="")
    assert DependencyReview.objects.get().answered_at is None


def test_propagation_reads_in_bulk_whatever_the_number_of_signals(graph):
    """Queries per propagation batch do not grow with its signals and edges."""
    org = graph.org
    downstream = graph.kpis["supply.fill_rate"]

    def run(count: int, at: datetime) -> int:
        ups = [
            KpiFactory(organization=org, team=graph.team, owner=graph.member, escalation="marketing")
            for _ in range(count)
        ]
        for up in ups:
            dependency_create(actor=None, upstream=up, downstream=downstream, kind="informs")
            SurgeSignal.objects.create(organization=org, kpi=up, at=at, previous=100, current=150, change=0.5)
        with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
            process_status_changes(now=at)
        return len(queries)

    assert run(2, T0) == run(20, T0 + 3 * DAY)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_group_each_downstream_kpis_signals_into_one_review(monkeypatch):
    """Batches of 20 signals, two sweeps side by side: signals of one downstream KPI land in different batches,
    and the downstream row lock still lets only one of them open its review; the owner's row lock, only one task."""
    monkeypatch.setattr("escalations.engine.reviews.propagation.BATCH_SIZE", 20)
    org = OrganizationFactory()
    owner = MembershipFactory(organization=org)
    team = TeamFactory(organization=org, lead=owner)
    downstream = [KpiFactory(organization=org, team=team, owner=owner) for _ in range(10)]
    upstream = [KpiFactory(organization=org, team=team, owner=owner) for _ in range(200)]
    Dependency.objects.bulk_create(
        Dependency(organization=org, upstream=up, downstream=downstream[i % 10], kind="informs")
        for i, up in enumerate(upstream)
    )
    now = timezone.now()
    SurgeSignal.objects.bulk_create(
        SurgeSignal(organization=org, kpi=up, at=now, previous=100, current=150, change=0.5) for up in upstream
    )

    def run() -> None:
        try:
            with tenancy.for_sweep(None):  # a thread starts with no scope; the beat's task sets this one
                process_status_changes(now=now)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert DependencySignal.objects.filter(propagated_at=None).count() == 0
    assert DependencySignal.objects.count() == DependencyReviewSignal.objects.count() == 200
    assert sorted(DependencyReview.objects.values_list("kpi_id", flat=True)) == sorted(k.pk for k in downstream)
    # One owner, one window: one task listing the ten KPIs, though two sweeps reached them in 20-signal batches.
    [task] = Task.objects.filter(kind="dependency_review")
    assert sorted(task.reviews.values_list("kpi_id", flat=True)) == sorted(k.pk for k in downstream)


def test_the_owner_answers_a_review_in_place_in_the_inbox(graph):
    change(graph.kpis["marketing.leads"], T0)
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    client = graph.client(graph.planner)
    inbox = client.get(reverse("escalations:task_inbox", args=[graph.org.slug]))
    assert (
        b"Marketing leads" in inbox.content
        and reverse("escalations:task_answer", args=[graph.org.slug, task.pk]).encode() in inbox.content
    )
    url = reverse("escalations:task_answer", args=[graph.org.slug, task.pk])
    assert graph.client(graph.member).post(url, {"impact": "yes"}).status_code == 403
    with time_machine.travel(T0 + HOUR, tick=False):
        refused = client.post(url, {"impact": "no", "reason": ""}, HTTP_HX_REQUEST="true")
        assert (
            b"Every decision needs its reason on record." in refused.content
            and not DependencyReview.objects.get().answer
        )
        answered = client.post(url, {"impact": "yes"}, HTTP_HX_REQUEST="true")
    assert b"preventive workstream is open" in answered.content
    assert Workstream.objects.get(kpi=graph.kpis["supply.fill_rate"]).kind == "preventive"


def test_the_owner_answers_each_kpi_of_a_shared_task_in_place(owner_of_two, stranger_tenant):
    t, k = owner_of_two, owner_of_two.kpis
    change(k["marketing.leads"], T0)
    sweep(T0)
    task = Task.objects.get(kind="dependency_review")
    fill, otif = (DependencyReview.objects.get(kpi=k[key]) for key in SUPPLY)
    client, url = t.client(t.planner), reverse("escalations:task_answer", args=[t.org.slug, task.pk])
    inbox = client.get(reverse("escalations:task_inbox", args=[t.org.slug])).content.decode()
    assert inbox.count(f'action="{url}"') == 2 and "2 of your KPIs" in inbox
    assert "Answer for Fill rate" in inbox and "Answer for On-time in full" in inbox
    assert ">Marketing leads</a> is off track: off_track for the test" in inbox and "On track -&gt; Off track" in inbox
    with time_machine.travel(T0 + HOUR, tick=False):
        row = client.post(url, {"review": fill.pk, "impact": "yes"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Answered for Fill rate: a preventive workstream is open." in row
    assert row.count(f'action="{url}"') == 1 and f'name="review" value="{otif.pk}"' in row  # the other KPI waits
    assert "hx-swap-oob" in row  # the navigation's task count follows
    with time_machine.travel(T0 + 2 * HOUR, tick=False):
        refused = client.post(url, {"review": otif.pk, "impact": "no", "reason": ""}, HTTP_HX_REQUEST="true")
        assert (
            "Every decision needs its reason on record." in refused.content.decode()
            and not DependencyReview.objects.get(pk=otif.pk).answer
        )
        foreign = client.post(url, {"review": 999999, "impact": "yes"}, HTTP_HX_REQUEST="true")
        assert "does not review that KPI" in foreign.content.decode()
        row = client.post(url, {"review": otif.pk, "impact": "no", "reason": "Carriers"}, HTTP_HX_REQUEST="true")
    row = row.content.decode()
    assert "Answered for On-time in full: no impact, reason recorded." in row and f'action="{url}"' not in row
    assert Task.objects.get(pk=task.pk).state == "done"
    # Without htmx: back to the inbox with a message.
    assert client.post(url, {"review": otif.pk, "impact": "yes"}).status_code == 302
    # A stranger sees nothing of it.
    stranger = stranger_tenant.client(stranger_tenant.executive)
    assert stranger.post(url, {"review": fill.pk, "impact": "yes"}).status_code == 404

"""The escalation engine with time travel (SEMANTICS.md sections 2 and 3): exact task and notification times;
and the sweeps' batches, whose queries do not grow with their size."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dependencies.models import Dependency
from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.engine.timing import Level, Policy
from escalations.models import (
    EscalationLevel,
    EscalationPolicy,
    MitigationPath,
    Notification,
    Task,
    Webhook,
    WebhookDelivery,
    Workstream,
)
from escalations.workstreams.services import (
    ActionDraft,
    action_update,
    mitigation_path_file,
    mitigation_path_review,
    task_acknowledge,
    workstream_close,
)
from governance.models import Membership, Organization, Role
from governance.services.teams import team_update
from scorecards.models import Kpi, StatusChange
from scorecards.services import ownership_transfer_direct
from tests.factories import KpiFactory, MembershipFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@pytest.fixture
def acme(tenant):
    """The worked example's policy on the tenant's KPI: owner task 2d, team lead after 1d, executives after 2d. The
    team is led by head@, not by the KPI's owner (lead@): an owner is never escalated to (four eyes)."""
    tenant.head = MembershipFactory(organization=tenant.org, user__email="head@acme.test")
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.head)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="standard")
    tenant.kpi.refresh_from_db()
    tenant.policy = policy
    return tenant


def change(kpi: Kpi, at: datetime, new: str = "off_track", old: str = "on_track") -> StatusChange:
    return StatusChange.objects.create(
        organization=kpi.organization, kpi=kpi, old=old, new=new, value=500, reason=f"{new} for the test", changed_at=at
    )


def sweep(at: datetime):
    with time_machine.travel(at, tick=False):
        process_status_changes(now=at)
        advance_escalations(now=at)


def tasks(kind: str | None = None) -> list[tuple]:
    qs = Task.objects.order_by("due_at", "assignee_id")
    if kind:
        qs = qs.filter(kind=kind)
    return [
        (t.kind, t.assignee.user.email, t.due_at, t.level, t.escalation_pass)
        for t in qs.select_related("assignee__user")
    ]


def notified(kind: str) -> list[tuple]:
    return sorted(
        (n.recipient.user.email, n.created_at)
        for n in Notification.objects.filter(kind=kind, channel="in_app").select_related("recipient__user")
    )


def test_a_breach_opens_one_workstream_and_the_owners_task(acme):
    c = change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + HOUR)  # a second sweep finds nothing new
    ws = Workstream.objects.get()
    assert (ws.kpi_id, ws.severity, ws.opened_at, ws.opened_by_change) == (acme.kpi.pk, "off_track", T0, c)
    assert tasks() == [("mitigation", "lead@acme.test", T0 + 2 * DAY, 0, 0)]
    assert notified("mitigation") == [("lead@acme.test", T0)]
    assert Notification.objects.filter(kind="mitigation", channel="email", delivered_at=None).count() == 1
    c.refresh_from_db()
    assert c.processed_at == T0


def test_the_worked_example_with_exact_times(acme):
    change(acme.kpi, T0)
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 5 * DAY, T0 + 6 * DAY):
        sweep(at)
    assert tasks("escalation") == [
        ("escalation", "head@acme.test", T0 + 3 * DAY, 1, 1),
        ("escalation", "exec@acme.test", T0 + 5 * DAY, 2, 1),
    ]
    assert notified("escalation") == [("exec@acme.test", T0 + 3 * DAY), ("head@acme.test", T0 + 2 * DAY)]
    ws = Workstream.objects.get()
    assert ws.exhausted_at == T0 + 5 * DAY and ws.next_escalation_at is None
    assert notified("exhausted") == [("admin@acme.test", T0 + 5 * DAY)]


def test_a_late_sweep_catches_up_with_each_step_at_its_own_time(acme):
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 10 * DAY)
    assert [t[2:] for t in tasks("escalation")] == [(T0 + 3 * DAY, 1, 1), (T0 + 5 * DAY, 2, 1)]
    assert set(Task.objects.filter(kind="escalation").values_list("state", flat=True)) == {"open"}
    ws = Workstream.objects.get()
    assert ws.exhausted_at == T0 + 5 * DAY
    # The levels it notified in this very sweep count: they were told, not skipped.
    assert ws.events.get(verb="exhausted").text.startswith("Escalation exhausted: every level and pass was notified")
    sweep(T0 + 11 * DAY)
    assert len(notified("exhausted")) == 1


def test_filing_does_not_pause_escalation_but_approval_stops_it(acme):
    change(acme.kpi, T0)
    sweep(T0)
    ws = Workstream.objects.get()
    with time_machine.travel(T0 + HOUR, tick=False):
        path = mitigation_path_file(
            workstream=ws,
            by=acme.lead,
            root_cause="Campaign paused",
            expected_recovery=date(2026, 11, 20),
            actions=[ActionDraft("Restart the campaign", acme.member, date(2026, 11, 10))],
        )
    assert Task.objects.get(kind="mitigation").state == "done"
    sweep(T0 + 2 * DAY)
    assert len(tasks("escalation")) == 1  # filed, not approved: the team lead is still told
    with time_machine.travel(T0 + 2 * DAY + HOUR, tick=False):
        mitigation_path_review(path=path, by=acme.head, approve=True, comment="Good plan")
    sweep(T0 + 7 * DAY)  # the action is due on the 10th: nothing is overdue yet
    assert len(tasks("escalation")) == 1
    assert Task.objects.get(kind="escalation").state == "done"
    assert Workstream.objects.get().exhausted_at is None


def test_an_explanation_without_actions_is_refused(acme):
    change(acme.kpi, T0)
    sweep(T0)
    with time_machine.travel(T0, tick=False), pytest.raises(ValidationError) as error:
        mitigation_path_file(
            workstream=Workstream.objects.get(),
            by=acme.lead,
            root_cause="Bad luck",
            expected_recovery=date(2026, 11, 9),
            actions=[],
        )
    assert "actions" in error.value.message_dict


def test_only_the_owner_files_and_only_executives_or_targets_review(acme):
    change(acme.kpi, T0)
    sweep(T0)
    ws = Workstream.objects.get()
    draft = [ActionDraft("Fix it", acme.member, date(2026, 11, 10))]
    with time_machine.travel(T0, tick=False):
        with pytest.raises(PermissionDenied):
            mitigation_path_file(
                workstream=ws, by=acme.member, root_cause="x", expected_recovery=date(2026, 11, 9), actions=draft
            )
        path = mitigation_path_file(
            workstream=ws, by=acme.lead, root_cause="x", expected_recovery=date(2026, 11, 9), actions=draft
        )
        with pytest.raises(PermissionDenied):
            mitigation_path_review(path=path, by=acme.member, approve=True, comment="")
        with pytest.raises(ValidationError):
            mitigation_path_review(path=path, by=acme.executive, approve=False, comment="")
        mitigation_path_review(path=path, by=acme.executive, approve=False, comment="Actions are too vague")
    # Rejection sends it back: the owner has a new task.
    assert [t[:2] for t in tasks("mitigation")] == [("mitigation", "lead@acme.test"), ("mitigation", "lead@acme.test")]
    assert notified("path_rejected") == [("lead@acme.test", T0)]


def test_acknowledgement_pauses_then_the_same_level_is_notified_again(acme):
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY)
    task = Task.objects.get(kind="escalation")
    with pytest.raises(PermissionDenied):
        task_acknowledge(task=task, by=acme.executive)
    with time_machine.travel(T0 + 2 * DAY + HOUR, tick=False):
        task_acknowledge(task=task, by=acme.head)
    sweep(T0 + 2 * DAY + 2 * HOUR)
    assert Workstream.objects.get().next_escalation_at == T0 + 2 * DAY + 5 * HOUR  # paused for ack_timeout
    for at in (T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY + 5 * HOUR):
        sweep(at)
    assert [t[1:] for t in tasks("escalation")] == [
        ("head@acme.test", T0 + 3 * DAY + 5 * HOUR, 1, 1),  # acknowledged: due with the next level, which moved
        ("head@acme.test", T0 + 3 * DAY + 5 * HOUR, 1, 1),  # the same level again, its wait anew
        ("exec@acme.test", T0 + 5 * DAY + 5 * HOUR, 2, 1),
    ]
    # The lead keeps one open escalation task on the workstream: the newest; the acknowledged one is superseded.
    lead_tasks = Task.objects.filter(kind="escalation", assignee=acme.head).order_by("created_at")
    assert list(lead_tasks.values_list("state", flat=True)) == ["cancelled", "open"]


def test_a_level_naming_nobody_is_skipped_and_logged(acme):
    acme.team.lead = None
    acme.team.save()
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY)
    assert [t[1:] for t in tasks("escalation")] == [("exec@acme.test", T0 + 4 * DAY, 2, 1)]
    ws = Workstream.objects.get()
    assert ws.events.filter(verb="level_skipped").count() == 1


def test_an_owner_who_leads_the_team_is_skipped_and_the_executives_are_reached(acme):
    """The KPI's owner leads its team (a department head owning the department's KPIs): level 1 (team lead) names
    only the owner, so it is skipped, on the timeline, and the executives get the episode when level 1 was due."""
    team_update(team=acme.team, actor=acme.admin.user, lead=acme.lead)
    change(acme.kpi, T0)
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY, T0 + 4 * DAY, T0 + 5 * DAY):
        sweep(at)
    assert tasks("escalation") == [("escalation", "exec@acme.test", T0 + 4 * DAY, 2, 1)]
    assert notified("escalation") == [("exec@acme.test", T0 + 2 * DAY)]
    assert not Task.objects.filter(kind="escalation", assignee=acme.lead).exists()
    ws = Workstream.objects.get()
    assert list(ws.events.filter(verb__in=["level_skipped", "escalated", "exhausted"]).values_list("at", "text")) == [
        (T0 + 2 * DAY, f"Level 1 (team lead) skipped: {acme.lead.user.name} owns this KPI"),
        (T0 + 2 * DAY, f"Escalated to level 2 (pass 1): {acme.executive.user.name}"),
        (T0 + 4 * DAY, "Escalation exhausted: every level and pass was notified, and no mitigation path is approved"),
    ]


def test_the_paths_filer_is_never_escalated_to(acme):
    """Whoever filed the episode's path (here the team lead, filing for the owner) is left out of its escalation."""
    change(acme.kpi, T0)
    sweep(T0)
    MitigationPath.objects.create(
        organization=acme.org,
        workstream=Workstream.objects.get(),
        root_cause="Campaign paused",
        expected_recovery=date(2026, 11, 20),
        filed_by=acme.head.user,
    )
    sweep(T0 + 2 * DAY)
    assert [t[1:] for t in tasks("escalation")] == [("exec@acme.test", T0 + 4 * DAY, 2, 1)]
    skipped = Workstream.objects.get().events.get(verb="level_skipped")
    assert skipped.text == f"Level 1 (team lead) skipped: {acme.head.user.name} filed the mitigation path"


@pytest.mark.parametrize("executive_active, reached", [(True, "exec@acme.test"), (False, "admin@acme.test")])
def test_a_policy_leaving_only_the_owner_falls_back_to_the_executives_then_the_admins(acme, executive_active, reached):
    """Every level names only the owner: the review is never silently nobody's. The executives get it at level 1,
    or the admins when no executive is active; the owner never does."""
    team_update(team=acme.team, actor=acme.admin.user, lead=acme.lead)
    EscalationLevel.objects.filter(position=2).update(targets=["owner"])
    Membership.objects.filter(pk=acme.executive.pk).update(is_active=executive_active)
    change(acme.kpi, T0)
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY):
        sweep(at)
    assert tasks("escalation") == [("escalation", reached, T0 + 3 * DAY, 1, 1)]
    ws = Workstream.objects.get()
    assert ws.exhausted_at == T0 + 3 * DAY
    owner = acme.lead.user.name
    assert ws.events.get(verb="escalated").text.endswith(f"(the policy leaves nobody else: {owner} owns this KPI)")
    assert ws.events.get(verb="level_skipped").text == f"Level 2 (KPI owner) skipped: {owner} owns this KPI"


def test_when_nobody_at_all_is_left_the_admins_are_told(acme):
    """No team lead and no active executive or admin: nobody to fall back on, so every level is skipped and the
    episode runs out when the owner's time does."""
    acme.team.lead = None
    acme.team.save()
    Membership.objects.filter(pk__in=[acme.executive.pk, acme.admin.pk]).update(is_active=False)
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY)
    assert tasks("escalation") == []
    assert Workstream.objects.get().exhausted_at == T0 + 2 * DAY


def test_a_business_hours_level_waits_for_the_opening(acme):
    Organization.objects.filter(pk=acme.org.pk).update(
        timezone="Europe/Berlin", business_start=time(9), business_end=time(17)
    )
    EscalationLevel.objects.filter(position=1).update(business_hours=True, wait=2 * HOUR)
    friday_evening = datetime(2026, 11, 4, 19, 0, tzinfo=UTC)  # Wed 20:00 Berlin; mitigation due Fri 20:00
    change(acme.kpi, friday_evening)
    sweep(friday_evening)
    sweep(friday_evening + 2 * DAY)  # Friday 20:00 Berlin: outside hours, nobody is told yet
    assert tasks("escalation") == []
    monday_open = datetime(2026, 11, 9, 8, 0, tzinfo=UTC)  # Monday 09:00 Berlin
    assert Workstream.objects.get().next_escalation_at == monday_open
    sweep(monday_open)
    assert [t[1:] for t in tasks("escalation")] == [("head@acme.test", monday_open + 2 * HOUR, 1, 1)]
    assert notified("escalation") == [("head@acme.test", monday_open)]


def test_the_policy_as_it_was_when_the_episode_opened_applies(acme):
    change(acme.kpi, T0)
    sweep(T0)
    EscalationLevel.objects.filter(policy=acme.policy).update(targets=["role:admin"], wait=10 * DAY)
    sweep(T0 + 2 * DAY)
    assert [t[1] for t in tasks("escalation")] == ["head@acme.test"]


def test_an_owner_change_moves_the_open_task_without_restarting_the_clock(acme):
    change(acme.kpi, T0)
    sweep(T0)
    ownership_transfer_direct(kpi=acme.kpi, to_owner=acme.member, actor=acme.admin.user, reason="Reorganisation")
    sweep(T0 + HOUR)
    assert tasks("mitigation") == [("mitigation", "member@acme.test", T0 + 2 * DAY, 0, 0)]
    assert notified("mitigation") == [("lead@acme.test", T0), ("member@acme.test", T0 + HOUR)]


def test_an_overdue_action_restarts_escalation_from_level_one(acme):
    change(acme.kpi, T0)
    sweep(T0)
    ws = Workstream.objects.get()
    with time_machine.travel(T0, tick=False):
        path = mitigation_path_file(
            workstream=ws,
            by=acme.lead,
            root_cause="x",
            expected_recovery=date(2026, 11, 20),
            actions=[ActionDraft("Hire a planner", acme.member, date(2026, 11, 4))],
        )
        mitigation_path_review(path=path, by=acme.executive, approve=True, comment="Credible plan.")
    sweep(T0 + 2 * DAY)
    assert tasks("escalation") == []
    overdue = datetime(2026, 11, 5, 0, 30, tzinfo=UTC)  # the 5th has begun in UTC: the action was due the 4th
    sweep(overdue)
    assert tasks("action") == [("action", "member@acme.test", overdue, 0, 0)]
    assert [t[1:] for t in tasks("escalation")] == [("head@acme.test", overdue + DAY, 1, 1)]
    with time_machine.travel(overdue + HOUR, tick=False):
        action_update(action=path.actions.get(), by=acme.member, progress="Hired", done=True)
    sweep(overdue + 5 * DAY)
    assert len(tasks("escalation")) == 1  # done: escalation stopped again


def test_recovery_resolves_cancels_and_tells_everyone_who_was_told(acme):
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY)
    change(acme.kpi, T0 + 2 * DAY + HOUR, new="on_track", old="off_track")
    sweep(T0 + 2 * DAY + HOUR)
    ws = Workstream.objects.get()
    assert (ws.resolved_at, ws.resolution) == (T0 + 2 * DAY + HOUR, "recovered")
    assert set(Task.objects.values_list("state", flat=True)) == {"cancelled"}
    assert notified("resolved") == [("head@acme.test", T0 + 2 * DAY + HOUR), ("lead@acme.test", T0 + 2 * DAY + HOUR)]
    sweep(T0 + 9 * DAY)
    assert len(tasks("escalation")) == 1  # nothing further


def test_a_breach_soon_after_recovery_continues_the_episode_a_later_one_opens_a_new_one(acme):
    change(acme.kpi, T0)
    change(acme.kpi, T0 + HOUR, new="on_track", old="off_track")
    change(acme.kpi, T0 + HOUR + 30 * 60 * timedelta(seconds=1), new="at_risk")  # within keep_for (1h)
    sweep(T0 + 2 * HOUR)
    assert Workstream.objects.count() == 1 and Workstream.objects.get().resolved_at is None
    change(acme.kpi, T0 + 3 * HOUR, new="on_track", old="at_risk")
    change(acme.kpi, T0 + 6 * HOUR, new="off_track")
    sweep(T0 + 6 * HOUR)
    assert Workstream.objects.count() == 2


def test_off_track_raises_the_severity_and_at_risk_does_not_lower_it(acme):
    change(acme.kpi, T0, new="at_risk")
    change(acme.kpi, T0 + HOUR, new="off_track", old="at_risk")
    change(acme.kpi, T0 + 2 * HOUR, new="at_risk", old="off_track")
    sweep(T0 + 3 * HOUR)
    assert list(Workstream.objects.values_list("severity", flat=True)) == ["off_track"]


def test_only_an_executive_closes_with_a_reason(acme):
    change(acme.kpi, T0)
    sweep(T0)
    ws = Workstream.objects.get()
    with pytest.raises(PermissionDenied):
        workstream_close(workstream=ws, by=acme.admin, resolution="accepted_risk", reason="fine")
    with pytest.raises(ValidationError):
        workstream_close(workstream=ws, by=acme.executive, resolution="accepted_risk", reason=" ")
    workstream_close(workstream=ws, by=acme.executive, resolution="accepted_risk", reason="Seasonal dip")
    ws.refresh_from_db()
    assert (ws.resolution, ws.resolution_reason, ws.closed_by) == ("accepted_risk", "Seasonal dip", acme.executive.user)


def test_a_stranger_organizations_members_are_never_targets(acme, stranger_tenant):
    MembershipFactory(organization=stranger_tenant.org, role=Role.EXECUTIVE)
    change(acme.kpi, T0)
    for at in (T0, T0 + 2 * DAY, T0 + 3 * DAY):
        sweep(at)
    assert {t[1] for t in tasks()} <= {"lead@acme.test", "head@acme.test", "exec@acme.test"}
    assert not Notification.objects.filter(organization=stranger_tenant.org).exists()


def test_a_person_told_again_keeps_one_open_escalation_task(acme):
    EscalationPolicy.objects.filter(pk=acme.policy.pk).update(repeat=1)
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 10 * DAY)  # a late sweep runs both passes at once
    states = [(t[1], t[4]) for t in tasks("escalation")]
    assert states == [("head@acme.test", 1), ("exec@acme.test", 1), ("head@acme.test", 2), ("exec@acme.test", 2)]
    open_ones = Task.objects.filter(kind="escalation", state="open").values_list(
        "assignee__user__email", "escalation_pass"
    )
    assert sorted(open_ones) == [("exec@acme.test", 2), ("head@acme.test", 2)]


@pytest.mark.parametrize(
    ("recovered", "timeline"),
    [
        # The upstream recovers after the downstream broke within its episode: held, then released.
        (
            T0 + 2 * HOUR,
            [("opened", T0 + HOUR), ("waiting_on_upstream", T0 + HOUR), ("upstream_resolved", T0 + 2 * HOUR)],
        ),
        # ... or before it broke: nothing holds it.
        (T0 + HOUR - MINUTE, [("opened", T0 + HOUR)]),
    ],
)
def test_a_batch_applies_changes_of_several_kpis_in_time_order(acme, recovered, timeline):
    upstream = acme.dependency.upstream
    change(upstream, T0)
    sweep(T0)
    change(acme.kpi, T0 + HOUR)
    change(upstream, recovered, new="on_track", old="off_track")
    sweep(T0 + 2 * HOUR)  # one batch holds both changes
    ws = Workstream.objects.get(kpi=acme.kpi)
    assert list(ws.events.values_list("verb", "at")) == timeline
    assert (ws.waiting_on, ws.next_escalation_at) == (None, T0 + HOUR + 2 * DAY)


def test_an_upstream_that_broke_earlier_in_the_same_batch_holds_the_downstream(acme):
    upstream = acme.dependency.upstream
    change(upstream, T0)
    change(acme.kpi, T0 + MINUTE)
    sweep(T0 + MINUTE)  # one batch opens both; the downstream's hold names an episode inserted with it
    held = Workstream.objects.get(kpi=acme.kpi)
    assert held.waiting_on == Workstream.objects.get(kpi=upstream)
    assert held.events.get(verb="waiting_on_upstream").at == T0 + MINUTE
    change(upstream, T0 + 3 * DAY, new="on_track", old="off_track")
    sweep(T0 + 3 * DAY)
    held.refresh_from_db()
    assert (held.waiting_on, held.level) == (None, 1)  # released at T0 + 3d, when level 1 was long due
    assert tasks("escalation") == [("escalation", "head@acme.test", T0 + 4 * DAY, 1, 1)]


def test_an_episode_reopened_after_its_upstream_recovered_escalates_again(acme):
    upstream = acme.dependency.upstream
    change(upstream, T0)
    change(acme.kpi, T0 + HOUR)  # held by the upstream's episode
    sweep(T0 + HOUR)
    change(acme.kpi, T0 + 2 * HOUR, new="on_track", old="off_track")  # recovers while held
    sweep(T0 + 2 * HOUR)
    change(upstream, T0 + 2 * HOUR + 15 * MINUTE, new="on_track", old="off_track")
    sweep(T0 + 2 * HOUR + 15 * MINUTE)
    change(acme.kpi, T0 + 2 * HOUR + 30 * MINUTE)  # breaks again within keep_for: the same episode
    sweep(T0 + 2 * HOUR + 30 * MINUTE)
    ws = Workstream.objects.get(kpi=acme.kpi)
    assert (ws.resolved_at, ws.waiting_on) == (None, None)
    assert list(ws.events.values_list("verb", "at"))[-2:] == [
        ("reopened", T0 + 2 * HOUR + 30 * MINUTE),
        ("escalated", T0 + 2 * HOUR + 30 * MINUTE),
    ]


def test_an_episode_reopened_within_its_upstreams_episode_is_released_when_that_one_recovers(acme):
    upstream = acme.dependency.upstream
    change(upstream, T0)
    change(acme.kpi, T0 + HOUR)  # held by the upstream's episode
    sweep(T0 + HOUR)
    change(acme.kpi, T0 + 2 * HOUR, new="on_track", old="off_track")
    sweep(T0 + 2 * HOUR)
    # One batch: the downstream breaks again within keep_for (the same episode, still held), then the upstream
    # recovers.
    change(acme.kpi, T0 + 2 * HOUR + 30 * MINUTE)
    change(upstream, T0 + 2 * HOUR + 45 * MINUTE, new="on_track", old="off_track")
    sweep(T0 + 3 * HOUR)
    ws = Workstream.objects.get(kpi=acme.kpi)
    assert (ws.resolved_at, ws.waiting_on) == (None, None)
    assert list(ws.events.values_list("verb", "at")) == [
        ("opened", T0 + HOUR),
        ("waiting_on_upstream", T0 + HOUR),
        ("resolved", T0 + 2 * HOUR),
        ("reopened", T0 + 2 * HOUR + 30 * MINUTE),
        ("upstream_resolved", T0 + 2 * HOUR + 45 * MINUTE),
        ("escalated", T0 + 2 * HOUR + 45 * MINUTE),  # a reopened episode resumes escalating at once
    ]


# --- batches: queries do not grow with their size ----------------------------------------------

# A whole sweep over one batch, savepoints included (about half are the reviews' phases and the empty claims).
# Each includes one read of the recipients' Slack links (the Slack channel's available_to).
STATUS_CHANGE_QUERIES = 37
ESCALATION_QUERIES = 34  # 2 of them connector health (the failing sources, the open tasks of sources), 1 the
# organizations flagged as having no admin


def statements(queries: CaptureQueriesContext) -> int:
    """Queries run, where one bulk insert counts once: SQLite's backend splits it into 999-parameter statements."""
    count, previous = 0, None
    for query in queries.captured_queries:
        insert = query["sql"].split(" (", 1)[0] if query["sql"].startswith("INSERT") else None
        count += insert is None or insert != previous
        previous = insert
    return count


def many_kpis(acme, count: int, prefix: str) -> list[Kpi]:
    return [
        KpiFactory(organization=acme.org, team=acme.team, owner=acme.lead, escalation="standard", key=f"{prefix}.{i}")
        for i in range(count)
    ]


def changes_of(kpis: list[Kpi], at: datetime, new: str, old: str) -> None:
    StatusChange.objects.bulk_create(
        StatusChange(organization=k.organization, kpi=k, old=old, new=new, reason="batch", changed_at=at) for k in kpis
    )


def measured(sweep_at, at: datetime) -> int:
    with time_machine.travel(at, tick=False), CaptureQueriesContext(connection) as queries:
        sweep_at(now=at)
    return statements(queries)


def status_change_batches(acme, count: int, t: datetime) -> list[int]:
    """Queries of four batches of `count` changes: opens held by an upstream; the upstream's recovery releasing them
    while each is raised (stale or at risk); recoveries; breaches again within keep_for, which reopen."""
    upstream = KpiFactory(organization=acme.org, team=acme.team, owner=acme.lead, key=f"up{count}")
    changes_of([upstream], t, "off_track", "on_track")
    process_status_changes(now=t)
    kpis = many_kpis(acme, count, f"many{count}")
    Dependency.objects.bulk_create(
        Dependency(organization=acme.org, upstream=upstream, downstream=k, kind="blocks") for k in kpis
    )
    changes_of(kpis, t + MINUTE, "off_track", "on_track")
    opened = measured(process_status_changes, t + MINUTE)
    assert Workstream.objects.filter(kpi__in=kpis, waiting_on__kpi=upstream).count() == count

    changes_of([upstream], t + 2 * HOUR, "on_track", "off_track")
    changes_of(kpis[::2], t + 2 * HOUR, "stale", "off_track")
    changes_of(kpis[1::2], t + 2 * HOUR, "at_risk", "off_track")
    released = measured(process_status_changes, t + 2 * HOUR)
    assert not Workstream.objects.filter(kpi__in=kpis).exclude(waiting_on=None).exists()
    assert Task.objects.filter(kpi__in=kpis, kind="data_freshness").count() == len(kpis[::2])

    changes_of(kpis, t + 3 * HOUR, "on_track", "at_risk")
    resolved = measured(process_status_changes, t + 3 * HOUR)
    assert Notification.objects.filter(workstream__kpi__in=kpis, kind="resolved").count() == 2 * count

    changes_of(kpis, t + 3 * HOUR + 30 * MINUTE, "off_track", "on_track")
    reopened = measured(process_status_changes, t + 3 * HOUR + 30 * MINUTE)
    assert Workstream.objects.filter(kpi__in=kpis, resolved_at=None).count() == count
    assert Workstream.objects.filter(kpi__in=kpis).count() == count
    return [opened, released, resolved, reopened]


def test_a_batch_of_status_changes_needs_the_same_queries_for_5_or_50_kpis(acme):
    Webhook.objects.filter(organization=acme.org).update(is_active=True)  # opened and resolved announce to it
    few, many = status_change_batches(acme, 5, T0), status_change_batches(acme, 50, T0 + 30 * DAY)
    assert few == many
    assert max(many) <= STATUS_CHANGE_QUERIES
    assert WebhookDelivery.objects.filter(event="workstream.opened").count() == 2 + 55


def test_an_escalation_batch_needs_the_same_queries_for_5_or_50_workstreams(acme):
    """Each workstream catches up at once: level 1, a level naming nobody (skipped), level 2, exhausted."""
    Webhook.objects.filter(organization=acme.org).update(is_active=True)
    policy = Policy(
        2 * DAY,
        4 * HOUR,
        0,
        (
            Level(("team_lead",), DAY),
            Level(("user:gone@acme.test",), DAY),
            Level(("role:executive",), 2 * DAY),
        ),
    ).as_json()

    def run(count: int, t: datetime) -> int:
        workstreams = Workstream.objects.bulk_create(
            Workstream(
                organization=acme.org,
                kpi=kpi,
                severity="off_track",
                opened_at=t - 10 * DAY,
                policy=policy,
                next_escalation_at=t - 8 * DAY,
            )
            for kpi in many_kpis(acme, count, f"due{count}")
        )
        # The first one has an approved path: it stops.
        MitigationPath.objects.create(
            organization=acme.org,
            workstream=workstreams[0],
            root_cause="x",
            expected_recovery=date(2027, 1, 1),
            filed_by=acme.lead.user,
            state="approved",
        )
        queries = measured(advance_escalations, t)
        escalated = Workstream.objects.filter(pk__in=[w.pk for w in workstreams], level=3, exhausted_at=t - 5 * DAY)
        assert escalated.count() == count - 1
        return queries

    few, many = run(5, T0), run(50, T0 + 30 * DAY)
    assert few == many
    assert many <= ESCALATION_QUERIES
    assert Task.objects.filter(kind="escalation").count() == 2 * (4 + 49)
    assert Notification.objects.filter(kind="exhausted", channel="in_app").count() == 4 + 49
    assert WebhookDelivery.objects.filter(event="workstream.escalated").count() == 2 * (4 + 49)
    skipped = Workstream.objects.get(kpi__key="due5.1").events.get(verb="level_skipped")
    assert (skipped.at, skipped.text) == (T0 - 7 * DAY, "Level 2 (gone@acme.test) skipped: names nobody active")

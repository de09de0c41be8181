"""The escalation engine with time travel (SEMANTICS.md sections 2 and 3): exact task and notification times."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from escalations.models import EscalationLevel, EscalationPolicy, Notification, Task, Workstream
from escalations.services import (
    ActionDraft,
    action_update,
    mitigation_path_file,
    mitigation_path_review,
    task_acknowledge,
    workstream_close,
)
from escalations.sweeps import advance_escalations, process_status_changes
from governance.models import Organization, Role
from scorecards.models import Kpi, StatusChange
from scorecards.services import ownership_transfer_direct
from tests.factories import MembershipFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.fixture
def acme(tenant):
    """The worked example's policy on the tenant's KPI: owner task 2d, team lead after 1d, executives after 2d."""
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
        ("escalation", "lead@acme.test", T0 + 3 * DAY, 1, 1),
        ("escalation", "exec@acme.test", T0 + 5 * DAY, 2, 1),
    ]
    assert notified("escalation") == [("exec@acme.test", T0 + 3 * DAY), ("lead@acme.test", T0 + 2 * DAY)]
    ws = Workstream.objects.get()
    assert ws.exhausted_at == T0 + 5 * DAY and ws.next_escalation_at is None
    assert notified("exhausted") == [("admin@acme.test", T0 + 5 * DAY)]


def test_a_late_sweep_catches_up_with_each_step_at_its_own_time(acme):
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 10 * DAY)
    assert [t[2:] for t in tasks("escalation")] == [(T0 + 3 * DAY, 1, 1), (T0 + 5 * DAY, 2, 1)]
    assert set(Task.objects.filter(kind="escalation").values_list("state", flat=True)) == {"open"}
    assert Workstream.objects.get().exhausted_at == T0 + 5 * DAY
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
        mitigation_path_review(path=path, by=acme.lead, approve=True, comment="Good plan")
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
        task_acknowledge(task=task, by=acme.lead)
    sweep(T0 + 2 * DAY + 2 * HOUR)
    assert Workstream.objects.get().next_escalation_at == T0 + 2 * DAY + 5 * HOUR  # paused for ack_timeout
    for at in (T0 + 2 * DAY + 5 * HOUR, T0 + 3 * DAY + 5 * HOUR):
        sweep(at)
    assert [t[1:] for t in tasks("escalation")] == [
        ("lead@acme.test", T0 + 3 * DAY, 1, 1),
        ("lead@acme.test", T0 + 3 * DAY + 5 * HOUR, 1, 1),  # the same level again, its wait anew
        ("exec@acme.test", T0 + 5 * DAY + 5 * HOUR, 2, 1),
    ]
    # The lead keeps one open escalation task on the workstream: the newest; the acknowledged one is superseded.
    lead_tasks = Task.objects.filter(kind="escalation", assignee=acme.lead).order_by("created_at")
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


def test_when_every_level_is_empty_the_admins_are_told(acme):
    acme.team.lead = None
    acme.team.save()
    acme.executive.is_active = False
    acme.executive.save()
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 2 * DAY)
    assert tasks("escalation") == []
    assert notified("exhausted") == [("admin@acme.test", T0 + 2 * DAY)]


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
    assert [t[1:] for t in tasks("escalation")] == [("lead@acme.test", monday_open + 2 * HOUR, 1, 1)]
    assert notified("escalation") == [("lead@acme.test", monday_open)]


def test_the_policy_as_it_was_when_the_episode_opened_applies(acme):
    change(acme.kpi, T0)
    sweep(T0)
    EscalationLevel.objects.filter(policy=acme.policy).update(targets=["role:admin"], wait=10 * DAY)
    sweep(T0 + 2 * DAY)
    assert [t[1] for t in tasks("escalation")] == ["lead@acme.test"]


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
        mitigation_path_review(path=path, by=acme.executive, approve=True, comment="")
    sweep(T0 + 2 * DAY)
    assert tasks("escalation") == []
    overdue = datetime(2026, 11, 5, 0, 30, tzinfo=UTC)  # the 5th has begun in UTC: the action was due the 4th
    sweep(overdue)
    assert tasks("action") == [("action", "member@acme.test", overdue, 0, 0)]
    assert [t[1:] for t in tasks("escalation")] == [("lead@acme.test", overdue + DAY, 1, 1)]
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
    assert notified("resolved") == [("lead@acme.test", T0 + 2 * DAY + HOUR)]
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
    assert {t[1] for t in tasks()} <= {"lead@acme.test", "exec@acme.test"}
    assert not Notification.objects.filter(organization=stranger_tenant.org).exists()


def test_a_person_told_again_keeps_one_open_escalation_task(acme):
    EscalationPolicy.objects.filter(pk=acme.policy.pk).update(repeat=1)
    change(acme.kpi, T0)
    sweep(T0)
    sweep(T0 + 10 * DAY)  # a late sweep runs both passes at once
    states = [(t[1], t[4]) for t in tasks("escalation")]
    assert states == [("lead@acme.test", 1), ("exec@acme.test", 1), ("lead@acme.test", 2), ("exec@acme.test", 2)]
    open_ones = Task.objects.filter(kind="escalation", state="open").values_list(
        "assignee__user__email", "escalation_pass"
    )
    assert sorted(open_ones) == [("exec@acme.test", 2), ("lead@acme.test", 2)]

"""Policy replay: the policy each episode followed, replayed over the real history, equals what the sweep did (to
the second); a draft's run has the times and people its rules give; the editor shows both; strangers see nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.engine.timing import Level, Policy
from escalations.models import EscalationLevel, EscalationPolicy, Task, Workstream
from escalations.policies.replay import policy_replay
from escalations.workstreams.services import ActionDraft, mitigation_path_file, mitigation_path_review
from governance.services.teams import team_update
from scorecards.models import Kpi, StatusChange
from tests.factories import KpiFactory, MembershipFactory, TeamFactory

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
END = T0 + 16 * DAY


@pytest.fixture
def history(tenant):
    """Four real episodes under one policy (owner 2d; team lead, wait 1d; executives in business hours, wait 4h of
    them; one repeat), run by the real sweeps at odd times: one never mitigated, one approved on day 3, one whose
    team has no lead (level 1 empty), one that recovered on day 4."""
    head = MembershipFactory(organization=tenant.org, user__email="head@acme.test")
    team_update(team=tenant.team, actor=tenant.admin.user, lead=head)
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="standard", name="Standard", mitigation_due=2 * DAY, ack_timeout=4 * HOUR, repeat=1
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["team_lead"], wait=DAY)
    EscalationLevel.objects.create(
        organization=tenant.org,
        policy=policy,
        position=2,
        targets=["role:executive"],
        wait=4 * HOUR,
        business_hours=True,
    )
    leaderless = TeamFactory(organization=tenant.org, key="sales", name="Sales")
    kpis = [
        tenant.kpi,
        KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="ops.b", name="Backlog"),
        KpiFactory(organization=tenant.org, team=leaderless, owner=tenant.member, key="sales.c", name="Calls"),
        KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.member, key="ops.d", name="Defects"),
    ]
    Kpi.objects.filter(pk__in=[k.pk for k in kpis]).update(escalation="standard")
    # Each status change is written when it happens (the evaluator's outbox) and the path approved when it is, with
    # a sweep just before (as beat's every-minute sweep would have run); between them the sweeps run at odd times.
    changes = {
        T0 + i * 5 * HOUR + timedelta(seconds=17 * i): (kpi, "off_track", "on_track") for i, kpi in enumerate(kpis)
    }
    changes[T0 + 4 * DAY + timedelta(minutes=3)] = (kpis[3], "on_track", "off_track")
    approval = T0 + 3 * DAY + 2 * HOUR + timedelta(minutes=10)
    regular = [T0 + k * (7 * HOUR + timedelta(minutes=13)) for k in range(60)]
    for at in sorted({*regular, *changes, approval}):
        if at >= END:
            break
        sweep(at)
        if at in changes:
            breach(changes[at][0], at, new=changes[at][1], old=changes[at][2])
            sweep(at)
        if at == approval:
            approve(tenant, Workstream.objects.get(kpi=kpis[1]), head, at)
    tenant.head, tenant.standard = head, policy
    return tenant, kpis


def breach(kpi: Kpi, at: datetime, new: str = "off_track", old: str = "on_track") -> None:
    StatusChange.objects.create(
        organization=kpi.organization, kpi=kpi, old=old, new=new, value=500, reason="test", changed_at=at
    )


def sweep(at: datetime) -> None:
    with time_machine.travel(at, tick=False):
        process_status_changes(now=at)
        advance_escalations(now=at)


def approve(tenant, ws: Workstream, reviewer, at: datetime) -> None:
    with time_machine.travel(at, tick=False):
        path = mitigation_path_file(
            workstream=ws,
            by=ws.kpi.owner,
            root_cause="Supplier late",
            expected_recovery=date(2026, 11, 30),
            actions=[ActionDraft("Second supplier", tenant.member, date(2026, 12, 20))],
        )
        mitigation_path_review(path=path, by=reviewer, approve=True, comment="Fine")


def what_the_sweep_did(ws: Workstream) -> list[tuple]:
    verbs = {"escalated": "notify", "level_skipped": "skipped", "exhausted": "exhausted"}
    return [(e.at, verbs[e.verb]) for e in ws.events.filter(verb__in=verbs).order_by("at", "pk")]


def test_replaying_the_policy_as_run_equals_what_the_sweep_did_to_the_second(history):
    tenant, kpis = history
    draft = Policy(DAY, HOUR, 0, (Level(("role:executive",), DAY),))
    result = policy_replay(org=tenant.org, draft=draft, policy_key="standard", days=30, now=END)
    assert [e.workstream.kpi for e in result.episodes] == kpis
    ended = [e.ended for e in result.episodes]
    assert ended == ["still open", "path approved", "still open", "recovered"]
    for run in result.episodes:
        replayed = [
            (s.at, "exhausted" if s.exhausted else "skipped" if s.skipped else "notify") for s in run.current.steps
        ]
        assert replayed == what_the_sweep_did(run.workstream)
        # The people too: each level's escalation tasks went to the ones the replay names.
        told = sorted(
            Task.objects.filter(workstream=run.workstream, kind="escalation").values_list(
                "assignee__user__name", flat=True
            )
        )
        assert told == sorted(
            name for i, s in enumerate(run.current.steps) if not s.exhausted for name in run.current.people.get(i, [])
        )
    never, approved, leaderless, recovered = result.episodes
    assert never.current.exhausted and not approved.current.exhausted and not recovered.current.exhausted
    assert any(s.skipped for s in leaderless.current.steps)
    assert len(what_the_sweep_did(never.workstream)) == 5  # level 1, level 2, both again, exhausted


def test_a_drafts_replay_has_the_times_and_people_its_rules_give(history, django_assert_max_num_queries):
    tenant, kpis = history
    draft = Policy(DAY, HOUR, 0, (Level(("role:executive",), DAY),))
    # Episodes, paths, business hours, admins, the executives: whatever the number of episodes.
    with django_assert_max_num_queries(6):
        result = policy_replay(org=tenant.org, draft=draft, policy_key="standard", days=30, now=END)
    never, approved, leaderless, recovered = result.episodes
    opened = never.workstream.opened_at
    assert [(s.at, s.level, s.exhausted) for s in never.draft.steps] == [
        (opened + DAY, 1, False),
        (opened + 2 * DAY, 1, True),
    ]
    assert never.draft.people[0] == [tenant.executive.user.name]
    # Under the draft every episode runs out before its path was approved or it recovered; as run, two did.
    assert (result.totals["draft"]["exhausted"], result.totals["current"]["exhausted"]) == (4, 2)
    week = [(lo.person, lo.week, lo.draft) for lo in result.load if lo.person == tenant.executive.user.name]
    assert week[0] == (tenant.executive.user.name, date(2026, 11, 2), 4)


def editor(tenant) -> str:
    return reverse("escalations:policy_edit", kwargs={"org_slug": tenant.org.slug, "policy_id": tenant.standard.pk})


def posted(days: str) -> dict:
    return {
        "op": "replay",
        "days": days,
        "name": "Standard",
        "mitigation_due": "1d",
        "ack_timeout": "4h",
        "repeat": "0",
        "level_count": "1",
        "level-0-targets": "role:executive",
        "level-0-wait": "1d",
    }


def test_the_editor_replays_the_draft_beside_the_policy_as_run(history):
    tenant, kpis = history
    client = tenant.client(tenant.admin)
    with time_machine.travel(END, tick=False):
        page = client.post(editor(tenant), posted("30"))
    html = page.content.decode()
    assert page.status_code == 200, html
    assert "Episode by episode" in html and "path approved" in html and "<strong>exhausted</strong>" in html
    tenant.standard.refresh_from_db()
    assert tenant.standard.mitigation_due == 2 * DAY  # replaying saves nothing
    with time_machine.travel(END, tick=False):
        refused = client.post(editor(tenant), posted("0"))
    assert refused.status_code == 422 and "Episode by episode" not in refused.content.decode()


def test_a_stranger_cannot_replay_anothers_policy(history, stranger_tenant):
    tenant, _ = history
    stranger = stranger_tenant.client(stranger_tenant.admin)
    foreign = reverse(
        "escalations:policy_edit", kwargs={"org_slug": stranger_tenant.org.slug, "policy_id": tenant.standard.pk}
    )
    assert stranger.post(foreign, posted("30")).status_code == 404
    assert stranger.post(editor(tenant), posted("30")).status_code == 404
    # And a replay of the stranger's own organization sees none of these episodes.
    result = policy_replay(org=stranger_tenant.org, draft=Policy(DAY, HOUR, 0, ()), days=30, now=END)
    assert result.episodes == []

"""Escalation policies: the pure plan, the admin pages (levels moved in place with htmx), validation, archiving,
defaults, and the preview's exact timeline against the engine."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from escalations.engine.sweeps import advance_escalations, process_status_changes
from escalations.engine.timing import BusinessHours, Level, Planned, Policy, plan
from escalations.models import EscalationLevel, EscalationPolicy, Workstream, WorkstreamEvent
from escalations.policies.selectors import preview
from governance.models import AuditEvent, Membership, Organization, Team
from governance.services.teams import team_update
from scorecards.models import Kpi, StatusChange
from tests.conftest import Tenant
from tests.factories import TeamFactory

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = BusinessHours.of(BERLIN, ["mon", "tue", "wed", "thu", "fri"], time(9), time(17))
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday


def berlin(*args) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def url(tenant: Tenant, name: str, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


def policy_data(levels: list[dict], **fields) -> dict:
    """The editor's POST: the policy's fields and `level-<n>-*` for each level."""
    data = {"name": "Night watch", "key": "night", "mitigation_due": "1d", "ack_timeout": "4h", "repeat": "0"}
    data["level_count"] = str(len(levels))
    for i, level in enumerate(levels):
        data[f"level-{i}-targets"] = level["targets"]
        data[f"level-{i}-wait"] = level.get("wait", "1d")
        if level.get("business_hours"):
            data[f"level-{i}-business_hours"] = "on"
    return {**data, **fields}


def stored(policy: EscalationPolicy) -> list[tuple]:
    return [(lv.position, lv.targets, lv.wait, lv.business_hours) for lv in policy.levels.order_by("position")]


HX = {"HTTP_HX_REQUEST": "true"}


def shown_levels(html: str) -> list[tuple[list[str], str, bool]]:
    """The levels as the editor shows them: selected targets, wait, business hours."""
    levels = []
    for i in itertools.count():
        if f'name="level-{i}-wait"' not in html:
            return levels
        targets = re.findall(rf'name="level-{i}-targets" value="([^"]+)" checked', html)
        wait = re.search(rf'name="level-{i}-wait" value="([^"]*)"', html).group(1)
        hours = re.search(rf'<input type="checkbox" name="level-{i}-business_hours"[^>]*>', html).group(0)
        levels.append((targets, wait, "checked" in hours))


# --- timing.plan: pure ------------------------------------------------------------------------------

WORKED = Policy(2 * DAY, 4 * HOUR, 0, (Level(("team_lead",), DAY), Level(("role:executive",), 2 * DAY)))


@pytest.mark.parametrize(
    ("policy", "empty", "expected"),
    [
        pytest.param(  # SEMANTICS.md's worked example: team lead at t0+2d, executives at t0+3d, exhausted t0+5d
            WORKED,
            frozenset(),
            [Planned(T0 + 2 * DAY, T0 + 2 * DAY, 1, 1), Planned(T0 + 3 * DAY, T0 + 3 * DAY, 2, 1)]
            + [Planned(T0 + 5 * DAY, T0 + 5 * DAY, 2, 1, exhausted=True)],
            id="worked-example",
        ),
        pytest.param(  # one extra pass runs both levels again, each delay from the previous level
            Policy(2 * DAY, 4 * HOUR, 1, WORKED.levels),
            frozenset(),
            [
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 1, 1),
                Planned(T0 + 3 * DAY, T0 + 3 * DAY, 2, 1),
                Planned(T0 + 5 * DAY, T0 + 5 * DAY, 1, 2),
                Planned(T0 + 6 * DAY, T0 + 6 * DAY, 2, 2),
                Planned(T0 + 8 * DAY, T0 + 8 * DAY, 2, 2, exhausted=True),
            ],
            id="repeat-1",
        ),
        pytest.param(  # an empty level is skipped and the next one is due at once
            WORKED,
            frozenset({1}),
            [
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 1, 1, skipped=True),
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 2, 1),
                Planned(T0 + 4 * DAY, T0 + 4 * DAY, 2, 1, exhausted=True),
            ],
            id="skipped-level",
        ),
        pytest.param(  # nobody anywhere: every level skipped, exhausted when the owner's time runs out
            WORKED,
            frozenset({1, 2}),
            [
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 1, 1, skipped=True),
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 2, 1, skipped=True),
                Planned(T0 + 2 * DAY, T0 + 2 * DAY, 2, 1, exhausted=True),
            ],
            id="all-empty",
        ),
        pytest.param(Policy(2 * DAY, 4 * HOUR, 3, ()), frozenset(), [], id="no-levels"),
    ],
)
def test_plan_walks_the_steps_like_the_sweep(policy, empty, expected):
    assert plan(policy, T0, HOURS, empty) == expected


def test_plan_moves_a_business_hours_level_across_the_weekend():
    """Opened Friday 15:00 in Berlin, due Saturday 15:00: the level hears Monday 09:00 and waits 4 open hours."""
    policy = Policy(DAY, 4 * HOUR, 0, (Level(("team_lead",), 4 * HOUR, business_hours=True),))
    assert plan(policy, berlin(2026, 11, 27, 15), HOURS) == [
        Planned(berlin(2026, 11, 30, 9), berlin(2026, 11, 28, 15), 1, 1),
        Planned(berlin(2026, 11, 30, 13), berlin(2026, 11, 30, 13), 1, 1, exhausted=True),
    ]


def test_plan_across_the_autumn_dst_change_keeps_real_elapsed_time():
    # 24 real hours after Saturday 24 Oct 12:00 CEST is Sunday 25 Oct 11:00 CET (the clock went back at 03:00).
    policy = Policy(DAY, HOUR, 0, (Level(("owner",), HOUR),))
    steps = plan(policy, berlin(2026, 10, 24, 12), HOURS)
    assert steps[0].at == berlin(2026, 10, 25, 11) and steps[1].at == berlin(2026, 10, 25, 12)


# --- who may use the pages ----------------------------------------------------------------------


@dataclass
class Call:
    name: str
    method: str
    kwargs: dict = field(default_factory=dict)  # names of Tenant attributes whose pk fills the URL
    data: dict = field(default_factory=dict)


CALLS = [
    Call("escalations:policy_list", "get"),
    Call("escalations:policy_create", "get"),
    Call("escalations:policy_create", "post", data=policy_data([{"targets": ["team_lead"]}])),
    Call("escalations:policy_edit", "get", {"policy_id": "policy"}),
    Call(
        "escalations:policy_edit",
        "post",
        {"policy_id": "policy"},
        policy_data([{"targets": ["owner"]}], name="Hijacked"),
    ),
    Call("escalations:policy_archive", "post", {"policy_id": "policy"}),
    Call("escalations:policy_defaults", "post"),
    Call("escalations:policy_preview", "get"),
    Call("escalations:webhook_list", "get"),
    Call("escalations:webhook_list", "post", data={"name": "Mine", "url": "https://example.com/hook"}),
    Call("escalations:webhook_detail", "get", {"webhook_id": "webhook"}),
    Call("escalations:webhook_detail", "post", {"webhook_id": "webhook"}, {"action": "rotate"}),
]


def rows(tenant: Tenant) -> list:
    return [
        list(EscalationPolicy.objects.filter(organization=tenant.org).values().order_by("pk")),
        list(EscalationLevel.objects.filter(organization=tenant.org).values().order_by("pk")),
        list(Organization.objects.filter(pk=tenant.org.pk).values()),
        list(Team.objects.filter(organization=tenant.org).values().order_by("pk")),
        list(tenant.webhook.__class__.objects.filter(organization=tenant.org).values().order_by("pk")),
    ]


@pytest.mark.parametrize("role", ["executive", "member", "lead"])
def test_only_admins_use_the_policy_and_webhook_pages(tenant, role):
    person: Membership = getattr(tenant, role)
    client, before = tenant.client(person), rows(tenant)
    for call in CALLS:
        kwargs = {name: getattr(tenant, attr).pk for name, attr in call.kwargs.items()}
        response = getattr(client, call.method)(url(tenant, call.name, **kwargs), call.data)
        assert response.status_code == 403, f"{call.method} {call.name}: {response.status_code}"
    assert rows(tenant) == before
    denied = AuditEvent.objects.filter(organization=tenant.org, verb="security.permission_denied", actor=person.user)
    assert sum(e.times for e in denied) == len(CALLS)


def test_admins_reach_every_page(tenant):
    client = tenant.client(tenant.admin)
    for call in CALLS:
        if call.method == "get":
            kwargs = {name: getattr(tenant, attr).pk for name, attr in call.kwargs.items()}
            assert client.get(url(tenant, call.name, **kwargs)).status_code == 200, call.name


def test_the_nav_links_the_pages_for_admins_only(tenant):
    assert (
        url(tenant, "escalations:policy_list")
        in tenant.client(tenant.admin).get(url(tenant, "scorecards:overview")).content.decode()
    )
    assert (
        url(tenant, "escalations:policy_list")
        not in tenant.client(tenant.executive).get(url(tenant, "scorecards:overview")).content.decode()
    )


# --- the list -----------------------------------------------------------------------------------


def test_the_list_says_each_policy_in_words_and_where_it_is_used(tenant):
    Organization.objects.filter(pk=tenant.org.pk).update(default_escalation="tenant-policy")
    Team.objects.filter(pk=tenant.team.pk).update(escalation="tenant-policy")
    html = tenant.client(tenant.admin).get(url(tenant, "escalations:policy_list")).content.decode()
    assert "Tenant policy" in html and "Organization default" in html and "Team Operations" in html
    assert "<strong>Team lead</strong>, then 1d until the next step" in html
    assert "due in <strong>2d</strong>" in html and "pauses it for 4h" in html
    assert "Running workstreams keep the policy as it was when they opened" in html


def test_the_list_has_a_clear_empty_state(tenant):
    EscalationPolicy.objects.filter(organization=tenant.org).delete()
    html = tenant.client(tenant.admin).get(url(tenant, "escalations:policy_list")).content.decode()
    assert "No escalation policies yet" in html and "Create the first policy" in html


def test_the_list_needs_a_constant_number_of_queries(tenant, django_assert_max_num_queries):
    for i in range(15):
        policy = EscalationPolicy.objects.create(
            organization=tenant.org, key=f"p{i}", name=f"P{i}", mitigation_due=DAY, ack_timeout=HOUR
        )
        for position in (1, 2):
            EscalationLevel.objects.create(
                organization=tenant.org, policy=policy, position=position, targets=["role:executive"], wait=DAY
            )
        TeamFactory(organization=tenant.org, escalation=f"p{i}")
    client = tenant.client(tenant.admin)
    with django_assert_max_num_queries(16):
        response = client.get(url(tenant, "escalations:policy_list"))
    assert response.content.decode().count('class="panel policy-card"') == 16


# --- create and edit, levels moved in place -------------------------------------------------------


def test_levels_are_added_moved_and_removed_in_place_with_htmx(tenant):
    client = tenant.client(tenant.admin)
    page = client.get(url(tenant, "escalations:policy_create")).content.decode()
    assert shown_levels(page) == [([], "1d", False)]

    levels = [{"targets": ["team_lead"], "wait": "4h"}]
    response = client.post(url(tenant, "escalations:policy_create"), policy_data(levels, op="add"), **HX)
    html = response.content.decode()
    assert (
        response.status_code == 200
        and "<html" not in html
        and html.lstrip().startswith('<section class="panel" id="levels"')
    )
    assert shown_levels(html) == [(["team_lead"], "4h", False), ([], "1d", False)]
    assert "Level 2 added." in html and 'name="level_count" value="2"' in html
    assert re.search(r'<h3 tabindex="-1" autofocus>Level 2</h3>', html)  # the focus follows the new level

    levels = [{"targets": ["team_lead"], "wait": "4h"}, {"targets": ["role:executive"], "wait": "2d"}]
    html = client.post(url(tenant, "escalations:policy_create"), policy_data(levels, op="up:1"), **HX).content.decode()
    assert shown_levels(html) == [(["role:executive"], "2d", False), (["team_lead"], "4h", False)]
    assert "Level 2 moved up: it is level 1 now." in html

    three = [*levels, {"targets": ["owner"], "wait": "1h", "business_hours": True}]
    html = client.post(
        url(tenant, "escalations:policy_create"), policy_data(three, op="remove:1"), **HX
    ).content.decode()
    assert shown_levels(html) == [(["team_lead"], "4h", False), (["owner"], "1h", True)]
    assert not EscalationPolicy.objects.filter(key="night").exists()  # nothing is saved until "save"
    assert not AuditEvent.objects.filter(verb__startswith="escalation_policy").exists()


def test_moving_a_level_works_without_javascript(tenant):
    levels = [{"targets": ["team_lead"]}, {"targets": ["role:executive"], "business_hours": True}]
    response = tenant.client(tenant.admin).post(
        url(tenant, "escalations:policy_create"), policy_data(levels, op="down:0")
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html  # the whole page comes back with the change
    assert shown_levels(html) == [(["role:executive"], "1d", True), (["team_lead"], "1d", False)]
    assert 'value="Night watch"' in html and "field-error" not in html  # kept, and not validated yet


def test_an_admin_creates_a_policy_and_it_is_audited(tenant):
    levels = [
        {"targets": ["team_lead", "user:lead@acme.test"], "wait": "4h"},
        {"targets": ["role:executive", "team:ops"], "wait": "2d", "business_hours": True},
    ]
    response = tenant.client(tenant.admin).post(
        url(tenant, "escalations:policy_create"), policy_data(levels, repeat="2")
    )
    assert response.status_code == 302 and response["Location"] == url(tenant, "escalations:policy_list")
    policy = EscalationPolicy.objects.get(organization=tenant.org, key="night")
    assert (policy.name, policy.mitigation_due, policy.ack_timeout, policy.repeat) == ("Night watch", DAY, 4 * HOUR, 2)
    assert stored(policy) == [
        (1, ["team_lead", "user:lead@acme.test"], 4 * HOUR, False),
        (2, ["role:executive", "team:ops"], 2 * DAY, True),
    ]
    audit = AuditEvent.objects.get(verb="escalation_policy.created")
    assert audit.actor == tenant.admin.user and audit.after["levels"][1] == {
        "notify": ["role:executive", "team:ops"],
        "wait": "2d",
        "business_hours": True,
    }


def test_an_edit_reorders_levels_in_place_and_running_episodes_keep_their_snapshot(tenant):
    policy = tenant.policy
    EscalationLevel.objects.create(
        organization=tenant.org, policy=policy, position=2, targets=["role:executive"], wait=2 * DAY
    )
    snapshot = {"mitigation_due": 172800.0, "ack_timeout": 14400.0, "repeat": 0, "levels": []}
    ws = Workstream.objects.create(
        organization=tenant.org,
        kpi=tenant.kpi,
        severity="off_track",
        opened_at=T0,
        policy_key=policy.key,
        policy=snapshot,
    )
    client = tenant.client(tenant.admin)
    edit = client.get(url(tenant, "escalations:policy_edit", policy_id=policy.pk))
    assert "Running workstreams keep the version they opened with" in edit.content.decode()
    levels = [{"targets": ["team_lead"], "wait": "1d"}, {"targets": ["role:executive"], "wait": "2d"}]
    moved = client.post(
        url(tenant, "escalations:policy_edit", policy_id=policy.pk), policy_data(levels, op="up:1"), **HX
    )
    order = [{"targets": targets, "wait": wait} for targets, wait, _ in shown_levels(moved.content.decode())]
    response = client.post(
        url(tenant, "escalations:policy_edit", policy_id=policy.pk), policy_data(order, name="Renamed", key="ignored")
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.name == "Renamed" and policy.key == "tenant-policy"  # the key never changes
    assert stored(policy) == [(1, ["role:executive"], 2 * DAY, False), (2, ["team_lead"], DAY, False)]
    audit = AuditEvent.objects.get(verb="escalation_policy.updated")
    assert [lv["notify"] for lv in audit.before["levels"]] == [["team_lead"], ["role:executive"]]
    assert [lv["notify"] for lv in audit.after["levels"]] == [["role:executive"], ["team_lead"]]
    ws.refresh_from_db()
    assert ws.policy == snapshot


@pytest.mark.parametrize(
    ("levels", "fields", "message"),
    [
        ([], {}, "Add at least one level"),
        ([{"targets": []}], {}, "Pick at least one target."),
        ([{"targets": ["owner"], "wait": "0m"}], {}, "Give a duration longer than zero"),
        ([{"targets": ["owner"], "wait": "soon"}], {}, "is not a duration; write &lt;n&gt;m, &lt;n&gt;h"),
        ([{"targets": ["owner"]}], {"mitigation_due": "0h"}, "Give a duration longer than zero"),
        ([{"targets": ["owner"]}], {"repeat": "10"}, "less than or equal to 9"),
        ([{"targets": ["owner"]}], {"key": "tenant-policy"}, "belongs to the policy &quot;Tenant policy&quot;"),
        ([{"targets": ["owner"]}], {"key": "Bad Key"}, "Use lowercase letters"),
        ([{"targets": ["team:nowhere"]}], {}, "Select a valid choice"),
        ([{"targets": ["user:admin@globex.test"]}], {}, "Select a valid choice"),  # no foreign people
    ],
)
def test_invalid_policies_are_refused_with_clear_messages(tenant, stranger_tenant, levels, fields, message):
    response = tenant.client(tenant.admin).post(url(tenant, "escalations:policy_create"), policy_data(levels, **fields))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not EscalationPolicy.objects.filter(key="night").exists()


def test_an_archived_policys_key_is_not_reused(tenant):
    EscalationPolicy.objects.filter(pk=tenant.policy.pk).update(archived_at=T0)
    response = tenant.client(tenant.admin).post(
        url(tenant, "escalations:policy_create"), policy_data([{"targets": ["owner"]}], key="tenant-policy")
    )
    assert response.status_code == 422 and "(archived); pick another" in response.content.decode()


def test_the_service_rechecks_targets_like_the_manifest(tenant):
    from escalations.policies.services import LevelDraft, policy_create

    with pytest.raises(Exception) as refused:
        policy_create(
            org=tenant.org,
            actor=tenant.admin.user,
            key="x",
            name="X",
            mitigation_due=DAY,
            ack_timeout=HOUR,
            repeat=0,
            levels=[LevelDraft(("team:nowhere", "user:nobody@acme.test", "role:boss"), DAY)],
        )
    assert refused.value.message_dict["levels"] == [
        'Level 1: unknown team "nowhere".',
        'Level 1: unknown member "nobody@acme.test".',
        'Level 1: unknown role "boss"; use admin, executive, member.',
    ]


# --- archive and defaults ---------------------------------------------------------------------------


def test_archiving_is_refused_while_the_policy_is_used_and_says_where(tenant):
    Organization.objects.filter(pk=tenant.org.pk).update(default_escalation="tenant-policy")
    Team.objects.filter(pk=tenant.team.pk).update(escalation="tenant-policy")
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="tenant-policy")
    client = tenant.client(tenant.admin)
    response = client.post(url(tenant, "escalations:policy_archive", policy_id=tenant.policy.pk), follow=True)
    html = response.content.decode()
    assert "the organization&#x27;s default; the default of team Operations; the policy of KPI Throughput" in html
    tenant.policy.refresh_from_db()
    assert tenant.policy.archived_at is None


def test_an_unused_policy_is_archived_never_deleted(tenant):
    client = tenant.client(tenant.admin)
    response = client.post(url(tenant, "escalations:policy_archive", policy_id=tenant.policy.pk))
    assert response.status_code == 302
    tenant.policy.refresh_from_db()
    assert tenant.policy.archived_at is not None and tenant.policy.levels.count() == 1
    assert AuditEvent.objects.filter(verb="escalation_policy.archived", object_id=str(tenant.policy.pk)).exists()
    html = client.get(url(tenant, "escalations:policy_list")).content.decode()
    assert "Archived policies" in html
    # No longer offered as a default, and no longer editable.
    assert f'value="{tenant.policy.pk}"' not in html
    edit = client.get(url(tenant, "escalations:policy_edit", policy_id=tenant.policy.pk))
    assert edit.status_code == 302


def test_defaults_are_assigned_on_the_list_page_and_audited(tenant):
    other = EscalationPolicy.objects.create(
        organization=tenant.org, key="other", name="Other", mitigation_due=DAY, ack_timeout=HOUR
    )
    response = tenant.client(tenant.admin).post(
        url(tenant, "escalations:policy_defaults"), {"default": tenant.policy.pk, f"team_{tenant.team.pk}": other.pk}
    )
    assert response.status_code == 302
    tenant.org.refresh_from_db()
    tenant.team.refresh_from_db()
    assert (tenant.org.default_escalation, tenant.team.escalation) == ("tenant-policy", "other")
    audit = AuditEvent.objects.get(verb="escalation_policy.defaults_assigned")
    assert audit.before == {"organization": "", "teams": {"ops": ""}}
    assert audit.after == {"organization": "tenant-policy", "teams": {"ops": "other"}}


def test_a_foreign_policy_cannot_become_a_default(tenant, stranger_tenant):
    response = tenant.client(tenant.admin).post(
        url(tenant, "escalations:policy_defaults"), {"default": stranger_tenant.policy.pk}
    )
    assert response.status_code == 422 and "Select a valid choice" in response.content.decode()
    tenant.org.refresh_from_db()
    assert tenant.org.default_escalation == ""


# --- the preview ---------------------------------------------------------------------------------

FRIDAY = berlin(2026, 11, 27, 15)  # an episode opening Friday afternoon runs into the weekend


@pytest.fixture
def weekend(tenant):
    """Owner 1d; team lead (business hours, 4h); an empty night-shift team (1h); executives (2h). The member leads the
    team, so that the owner (the lead) is not its own escalation (four eyes)."""
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.member)
    TeamFactory(organization=tenant.org, key="night-shift", name="Night shift")
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="weekend", name="Weekend", mitigation_due=DAY, ack_timeout=HOUR
    )
    for position, targets, wait, hours in [
        (1, ["team_lead"], 4 * HOUR, True),
        (2, ["team:night-shift"], HOUR, False),
        (3, ["role:executive"], 2 * HOUR, False),
    ]:
        EscalationLevel.objects.create(
            organization=tenant.org, policy=policy, position=position, targets=targets, wait=wait, business_hours=hours
        )
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="weekend")
    tenant.kpi.refresh_from_db()
    return policy


EXPECTED = [
    ("owner", FRIDAY, ["lead"]),
    ("notify", berlin(2026, 11, 30, 9), ["member"]),  # due Saturday 15:00: waits for Monday's opening
    ("skipped", berlin(2026, 11, 30, 13), []),  # 4 open hours later; the night shift names nobody
    ("notify", berlin(2026, 11, 30, 13), ["executive"]),  # due at once after the skip
    ("exhausted", berlin(2026, 11, 30, 15), ["admin"]),
]


def expected_rows(tenant: Tenant) -> list[tuple]:
    return [(kind, at, [getattr(tenant, who).user.name for who in people]) for kind, at, people in EXPECTED]


def test_the_preview_shows_who_hears_when_across_a_berlin_weekend(tenant, weekend):
    client = tenant.client(tenant.admin)
    with time_machine.travel(FRIDAY, tick=False):
        response = client.get(url(tenant, "escalations:policy_preview"), {"kpi": tenant.kpi.pk})
        partial = client.get(url(tenant, "escalations:policy_preview"), {"kpi": tenant.kpi.pk}, **HX).content.decode()
    shown = response.context["preview"]
    assert [(r.kind, r.at, r.people) for r in shown.rows] == expected_rows(tenant)
    assert shown.policy_label == "Weekend (its own)"
    assert "<html" not in partial and partial.lstrip().startswith('<div id="preview"')
    assert "Times in Europe/Berlin" in partial
    assert "Mon 30 Nov <strong>09:00</strong>" in partial and "Fri 27 Nov <strong>15:00</strong>" in partial
    assert "Due Sat 28 Nov 15:00, outside business hours: waits for the opening." in partial
    assert "Names nobody active today: skipped" in partial and "Team Night shift" in partial


def test_the_preview_shows_the_owner_who_leads_the_team_skipped(tenant, weekend):
    """The KPI's owner leads its team: level 1 (team lead) names only the owner, so the preview skips it, saying why,
    exactly as the sweep will."""
    team_update(team=tenant.team, actor=tenant.admin.user, lead=tenant.lead)
    with time_machine.travel(FRIDAY, tick=False):
        response = tenant.client(tenant.admin).get(url(tenant, "escalations:policy_preview"), {"kpi": tenant.kpi.pk})
    rows = response.context["preview"].rows
    assert [(r.kind, r.people) for r in rows[1:3]] == [("skipped", []), ("skipped", [])]
    assert rows[1].note.endswith(f"{tenant.lead.user.name} owns this KPI: skipped, and the next step is due at once.")
    assert f"{tenant.lead.user.name} owns this KPI: skipped" in response.content.decode()
    assert all(tenant.lead.user.name not in r.people for r in rows[1:])


def test_the_preview_falls_back_to_the_executives_when_the_policy_leaves_only_the_owner(tenant):
    policy = EscalationPolicy.objects.create(
        organization=tenant.org, key="self", name="Self", mitigation_due=DAY, ack_timeout=HOUR
    )
    EscalationLevel.objects.create(organization=tenant.org, policy=policy, position=1, targets=["owner"], wait=HOUR)
    Kpi.objects.filter(pk=tenant.kpi.pk).update(escalation="self")
    with time_machine.travel(FRIDAY, tick=False):
        response = tenant.client(tenant.admin).get(url(tenant, "escalations:policy_preview"), {"kpi": tenant.kpi.pk})
    row = response.context["preview"].rows[1]
    assert (row.kind, row.people) == ("notify", [tenant.executive.user.name])
    assert "owns this KPI): the organization's executives get it" in row.note


def test_the_preview_matches_what_the_engine_does(tenant, weekend):
    """Run the real sweeps through the same weekend: every event lands where the preview put it."""
    change = StatusChange.objects.create(
        organization=tenant.org, kpi=tenant.kpi, old="on_track", new="off_track", value=1, reason="t", changed_at=FRIDAY
    )
    for at in [FRIDAY, berlin(2026, 11, 28, 15), *(at for _, at, _ in EXPECTED[1:])]:
        with time_machine.travel(at, tick=False):
            process_status_changes(now=at)
            advance_escalations(now=at)
    events = WorkstreamEvent.objects.filter(workstream__opened_by_change=change).order_by("at", "id")
    kinds = {"opened": "owner", "escalated": "notify", "level_skipped": "skipped", "exhausted": "exhausted"}
    assert [(kinds[e.verb], e.at) for e in events] == [(kind, at) for kind, at, _ in EXPECTED]


def test_the_preview_of_a_draft_uses_the_unsaved_levels(tenant, weekend):
    levels = [{"targets": ["role:executive"], "wait": "2h"}]
    with time_machine.travel(FRIDAY, tick=False):
        response = tenant.client(tenant.admin).post(
            url(tenant, "escalations:policy_preview"), policy_data(levels, mitigation_due="1h", kpi=tenant.kpi.pk)
        )
    shown = response.context["preview"]
    assert shown.policy_label == "Night watch (as edited, not saved)"
    assert [(r.kind, r.at) for r in shown.rows] == [
        ("owner", FRIDAY),
        ("notify", FRIDAY + HOUR),
        ("exhausted", FRIDAY + 3 * HOUR),
    ]


def test_the_editor_previews_without_javascript(tenant, weekend):
    levels = [{"targets": ["team_lead"], "wait": "4h", "business_hours": True}]
    with time_machine.travel(FRIDAY, tick=False):
        response = tenant.client(tenant.admin).post(
            url(tenant, "escalations:policy_edit", policy_id=weekend.pk),
            policy_data(levels, op="preview", kpi=tenant.kpi.pk),
        )
    assert response.status_code == 200 and "<html" in response.content.decode()
    assert [r.at for r in response.context["preview"].rows][1:] == [berlin(2026, 11, 30, 9), berlin(2026, 11, 30, 13)]
    assert stored(weekend)[0][1] == ["team_lead"] and len(stored(weekend)) == 3  # previewing saves nothing


def test_the_preview_of_a_kpi_without_a_policy_is_the_owners_task_alone(tenant):
    with time_machine.travel(FRIDAY, tick=False):
        shown = preview(kpi=tenant.kpi, policy=Policy(2 * DAY, HOUR, 0, ()), policy_label="none", opened=FRIDAY)
    assert [(r.kind, r.at) for r in shown.rows] == [("owner", FRIDAY)]
    assert "there is no escalation" in shown.rows[0].note


def test_a_foreign_kpi_cannot_be_previewed(tenant, stranger_tenant):
    response = tenant.client(tenant.admin).get(
        url(tenant, "escalations:policy_preview"), {"kpi": stranger_tenant.kpi.pk}
    )
    assert response.context["preview"] is None and "Select a valid choice" in response.content.decode()

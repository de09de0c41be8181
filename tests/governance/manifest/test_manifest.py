from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from dependencies.models import Dependency
from escalations.models import EscalationLevel, EscalationPolicy
from governance.manifest.diff import render_diff
from governance.manifest.document import dump_yaml
from governance.manifest.engine import apply_manifest, export_manifest
from governance.models import AuditEvent, Invitation, Membership, Organization, Role, Team
from scorecards.models import DataSource, KeyResult, Kpi, Objective, OwnershipTransfer, Scorecard
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory, UserFactory

FIXTURE = Path(__file__).parents[2] / "fixtures" / "manifest.yaml"
MODELS = [
    Organization,
    Team,
    Membership,
    Invitation,
    Kpi,
    Objective,
    KeyResult,
    Scorecard,
    DataSource,
    Dependency,
    EscalationPolicy,
    EscalationLevel,
    OwnershipTransfer,
    AuditEvent,
]


def make_org(slug: str) -> Organization:
    """What MANIFEST.md's example names without declaring: its people, the leadership team and a KPI."""
    org = OrganizationFactory(slug=slug, name=slug.capitalize())
    MembershipFactory(organization=org, role=Role.ADMIN, user__email="admin@acme.test", user__name="Ada Admin")
    ceo = MembershipFactory(organization=org, role=Role.EXECUTIVE, user__email="ceo@acme.test", user__name="Claire")
    MembershipFactory(organization=org, role=Role.EXECUTIVE, user__email="coo@acme.test", user__name="Omar")
    MembershipFactory(organization=org, user__email="vp.marketing@acme.test", user__name="Maya")
    leadership = TeamFactory(organization=org, key="leadership", name="Leadership")
    KpiFactory(organization=org, team=leadership, owner=ceo, key="sc.inventory_turnover", name="Inventory turnover")
    return org


@pytest.fixture
def acme(db) -> Organization:
    return make_org("acme")


def example() -> dict:
    return yaml.safe_load(FIXTURE.read_text())


def applied(source, **options):
    result = apply_manifest(source, **options)
    assert result.errors == [], result.errors.lines()
    return result


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def fresh_export(slug: str = "acme") -> dict:
    return export_manifest(Organization.objects.get(slug=slug))


def test_it_applies_the_example_of_manifest_md(acme):
    result = applied(FIXTURE.read_text())

    kpi = Kpi.objects.select_related("team", "owner__user", "data_source").get(organization=acme, key="mkt.leads")
    assert (kpi.team.key, kpi.owner.user.email, kpi.data_source.key) == (
        "marketing",
        "vp.marketing@acme.test",
        "warehouse",
    )
    assert (kpi.aggregate_fn, kpi.aggregate_window, kpi.target_value) == ("sum", timedelta(days=7), 1200)
    assert kpi.thresholds == {"warning": 1000, "critical": 800}
    assert (kpi.cadence, kpi.stale_after, kpi.pending_for, kpi.keep_for) == (
        timedelta(days=1),
        timedelta(days=3),
        timedelta(hours=2),
        timedelta(hours=1),
    )
    assert (kpi.recovery_margin, kpi.surge_change, kpi.surge_window) == ("2%", "30%", timedelta(days=7))
    assert (kpi.escalation, kpi.forecast) == ("standard", False)
    acme.refresh_from_db()
    assert (acme.name, acme.timezone, acme.default_escalation) == ("Acme Electronics", "Europe/Berlin", "standard")
    marketing = Team.objects.get(organization=acme, key="marketing")
    assert (marketing.parent.key, marketing.lead.user.email, marketing.escalation) == (
        "leadership",
        "vp.marketing@acme.test",
        "standard",
    )
    policy = EscalationPolicy.objects.get(organization=acme, key="standard")
    assert [(lv.targets, lv.wait, lv.business_hours) for lv in policy.levels.all()] == [
        (["team_lead"], timedelta(days=1), False),
        (["role:executive", "user:coo@acme.test"], timedelta(days=2), True),
    ]
    edge = Dependency.objects.get(organization=acme)
    assert (edge.upstream.key, edge.downstream.key, edge.lag) == ("mkt.leads", "sc.inventory_turnover", timedelta(21))
    assert KeyResult.objects.get(key="kr.leads").kpi == kpi
    assert sorted(Scorecard.objects.get(key="exec").kpis.values_list("key", flat=True)) == [
        "mkt.leads",
        "sc.inventory_turnover",
    ]
    source = DataSource.objects.get(key="warehouse")
    assert source.config["dsn_secret"] == "warehouse_dsn"
    assert source.config["pulls"][0]["kpi"] == "sc.inventory_turnover"
    assert "+ kpi mkt.leads" in render_diff(result.changes).splitlines()


def test_applying_the_same_manifest_twice_changes_nothing_the_second_time(acme):
    applied(FIXTURE.read_text())
    events = AuditEvent.objects.count()

    again = applied(FIXTURE.read_text())

    assert again.changes == []
    assert render_diff(again.changes) == "No changes."
    assert AuditEvent.objects.count() == events  # a no-op apply writes nothing, not even its summary


def test_export_then_apply_is_a_no_op_and_the_export_is_stable(acme):
    applied(FIXTURE.read_text())
    exported = fresh_export()

    assert applied(exported).changes == []
    assert applied(dump_yaml(exported)).changes == []
    assert fresh_export() == exported
    assert list(exported) == [
        "version",
        "organization",
        "teams",
        "members",
        "escalation_policies",
        "kpis",
        "dependencies",
        "objectives",
        "scorecards",
        "data_sources",
    ]


def test_how_long_raw_measurements_are_kept_round_trips(acme):
    doc = example()
    doc["organization"]["raw_measurement_days"] = 3
    assert apply_manifest(doc).errors.lines() == ["organization.raw_measurement_days: must be from 7 to 36500, not 3"]

    doc["organization"]["raw_measurement_days"] = 90
    applied(doc)
    assert Organization.objects.get(slug="acme").raw_measurement_days == 90
    exported = fresh_export()
    assert exported["organization"]["raw_measurement_days"] == 90
    assert applied(exported).changes == []

    del doc["organization"]["raw_measurement_days"]  # absent: every point is kept
    applied(doc)
    assert Organization.objects.get(slug="acme").raw_measurement_days is None
    assert "raw_measurement_days" not in fresh_export()["organization"]


def test_the_export_leaves_out_defaults_and_formats_durations_and_dates(acme):
    applied(FIXTURE.read_text())
    exported = fresh_export()

    leads = next(k for k in exported["kpis"] if k["key"] == "mkt.leads")
    assert "stale_after" not in leads  # 3 x cadence, the default
    assert "cadence" not in leads and "forecast" not in leads and "evaluate_every" not in leads
    assert leads["aggregate"] == {"fn": "sum", "window": "1w"}
    assert leads["recovery_margin"] == "2%"
    assert exported["objectives"][0]["period"] == {"start": "2026-10-01", "end": "2026-12-31"}
    assert exported["objectives"][0]["key_results"][0]["kpi"] == "mkt.leads"
    assert exported["escalation_policies"][0]["levels"][0] == {"notify": ["team_lead"], "wait": "1d"}
    members = {m["email"]: m for m in exported["members"]}
    assert members["vp.marketing@acme.test"] == {
        "email": "vp.marketing@acme.test",
        "name": "Maya",
        "teams": ["marketing"],
    }
    assert members["admin@acme.test"]["role"] == "admin"


def test_a_dry_run_shows_the_diff_and_changes_nothing(acme):
    before = row_counts()

    result = applied(FIXTURE.read_text(), dry_run=True)

    assert row_counts() == before
    diff = render_diff(result.changes).splitlines()
    assert "+ kpi mkt.leads" in diff
    assert "+ team marketing" in diff
    assert "~ organization acme: default_escalation (none) -> standard" in diff
    assert "+ dependency mkt.leads -> sc.inventory_turnover" in diff


def test_an_update_is_listed_field_by_field(acme):
    applied(FIXTURE.read_text())
    doc = example()
    doc["kpis"][0]["target"] = 1300
    doc["kpis"][0]["cadence"] = "2d"

    result = applied(doc, dry_run=True)

    assert render_diff(result.changes).splitlines() == [
        "~ kpi mkt.leads: target 1200 -> 1300",
        "~ kpi mkt.leads: cadence 1d -> 2d",
    ]


def test_the_default_stale_after_follows_the_cadence(acme):
    doc = example()
    del doc["kpis"][0]["stale_after"]
    doc["kpis"][0]["cadence"] = "2d"

    applied(doc)

    assert Kpi.objects.get(key="mkt.leads").stale_after == timedelta(days=6)
    assert "stale_after" not in next(k for k in fresh_export()["kpis"] if k["key"] == "mkt.leads")


BROKEN = """
version: 1
organization: {slug: acme, name: Acme Electronics}
teams:
  - {key: marketing, name: 42}
kpis:
  - key: mkt.leads
    name: Leads
    team: ghost
    owner: nobody@acme.test
    colour: red
    thresholds: {warning: 1000, critical: 800}
    escalation: nope
  - {key: mkt.leads, name: Again, team: leadership, owner: ceo@acme.test, thresholds: {warning: 2, critical: 1}}
  - key: mkt.cost
    name: Cost
    team: leadership
    owner: ceo@acme.test
    thresholds: {warning: 800, critical: 1000}
    stale_after: 2 hours
    target: lots
  - {key: mkt.a, name: A, team: leadership, owner: ceo@acme.test, thresholds: {warning: 2, critical: 1}, cadence: 5}
dependencies:
  - {from: mkt.a, to: sc.inventory_turnover, kind: blocks}
  - {from: sc.inventory_turnover, to: mkt.a, kind: blocks}
objectives:
  - key: o.a
    title: A
    owner: ceo@acme.test
    team: leadership
    period: {start: 2026-10-01, end: 2026-12-31}
    parent: o.b
  - key: o.b
    title: B
    owner: ceo@acme.test
    team: leadership
    period: {start: 2026-10-01, end: 2026-12-31}
    parent: o.a
"""


def test_an_invalid_manifest_reports_every_error_with_its_path_and_writes_nothing(acme):
    before = row_counts()

    result = apply_manifest(BROKEN)

    assert row_counts() == before
    assert set(result.errors.lines()) >= {
        "teams[0].name: must be a string, not a number",
        'kpis[0].team: unknown team "ghost"',
        'kpis[0].owner: unknown member "nobody@acme.test"',
        "kpis[0].colour: unknown field",
        'kpis[0].escalation: unknown escalation policy "nope"',
        'kpis[1].key: duplicate key "mkt.leads" (also kpis[0])',
        "kpis[2].thresholds: warning must be above critical for direction increase",
        'kpis[2].stale_after: "2 hours" is not a duration; write <n>m, <n>h, <n>d or <n>w (e.g. 2h, 7d)',
        "kpis[2].target: must be a number or a mapping with value, by and baseline, not 'lots'",
        'kpis[3].cadence: must be a duration like "2h" or "7d", not a number',
        "dependencies[0]: closes the cycle mkt.a -> sc.inventory_turnover -> mkt.a",
        "objectives[0].parent: cycle o.a -> o.b -> o.a",
    }
    assert len(result.errors) == 12
    # Listed in the document's order.
    assert [path.split("[")[0].split(".")[0] for path, _ in result.errors][:2] == ["teams", "kpis"]


def test_a_cycle_with_an_edge_already_stored_is_refused(acme):
    applied(FIXTURE.read_text())
    doc = example()
    doc["dependencies"] = [{"from": "sc.inventory_turnover", "to": "mkt.leads", "kind": "informs"}]

    result = apply_manifest(doc)

    assert result.errors.lines() == [
        "dependencies[0]: closes the cycle sc.inventory_turnover -> mkt.leads -> sc.inventory_turnover"
    ]


def test_an_edge_to_itself_is_refused(acme):
    doc = example()
    doc["dependencies"] = [{"from": "sc.inventory_turnover", "to": "sc.inventory_turnover", "kind": "informs"}]

    assert apply_manifest(doc).errors.lines() == ["dependencies[0].to: a KPI cannot depend on itself"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\norganization: [x", "manifest: line 2, column 17: "),
        ("version: 1\nversion: 1\n", "manifest: line 2, column 1: duplicate field 'version'"),
        ("- just\n- a list\n", "manifest: must be a mapping"),
        ('{"version": 1, "organization": ', "manifest: line 1, column 32: Expecting value (not valid JSON)"),
        ("version: 2\norganization: {slug: acme, name: A}\nsurprise: 1\n", "surprise: unknown field"),
        ("version: 1\norganization: {slug: acme, name: A}\nkey_results: []\n", "key_results: unknown field"),
        ('{"version": 1, "version": 1}', "manifest: duplicate field 'version'"),
        ("{version: 1, organization: {slug: acme, name: A}, colour: red}", "colour: unknown field"),
        ("version: 1\norganization: {slug: Acme!, name: A}\n", 'organization.slug: "Acme!": Use 1-50'),
    ],
)
def test_it_reports_unreadable_documents(acme, text, expected):
    result = apply_manifest(text)
    assert any(line.startswith(expected) for line in result.errors.lines()), result.errors.lines()


def test_an_owner_change_is_an_approved_transfer_with_the_checksum_in_its_reason(acme):
    applied(FIXTURE.read_text())
    doc = example()
    doc["kpis"][0]["owner"] = "ceo@acme.test"
    text = yaml.safe_dump(doc)
    checksum = hashlib.sha256(text.encode()).hexdigest()

    result = applied(text)

    assert "~ kpi mkt.leads: owner vp.marketing@acme.test -> ceo@acme.test (ownership transfer)" in render_diff(
        result.changes
    )
    kpi = Kpi.objects.get(organization=acme, key="mkt.leads")
    assert kpi.owner.user.email == "ceo@acme.test"
    transfer = OwnershipTransfer.objects.get(kpi=kpi)
    assert transfer.state == OwnershipTransfer.State.APPROVED
    assert transfer.from_owner.user.email == "vp.marketing@acme.test"
    assert checksum in transfer.reason
    event = AuditEvent.objects.get(verb="kpi.owner_changed", object_id=str(kpi.pk))
    assert checksum in event.after["reason"]
    summary = AuditEvent.objects.filter(verb="manifest.applied").first()
    assert summary.after["sha256"] == checksum
    assert summary.after["updated"] == 1


def test_an_invited_person_cannot_own_a_kpi_yet(acme):
    doc = example()
    doc["members"].append({"email": "new.hire@acme.test", "role": "member", "teams": ["marketing"]})
    doc["kpis"][0]["owner"] = "new.hire@acme.test"

    result = apply_manifest(doc)

    assert result.errors.lines() == [
        "kpis[0].owner: new.hire@acme.test is invited but has not accepted yet (invitation pending); "
        "only active members can be named"
    ]


def test_new_emails_get_an_invitation_once(acme):
    doc = example()
    doc["members"].append({"email": "New.Hire@acme.test", "role": "executive", "teams": ["marketing"]})

    result = applied(doc)

    assert "+ member new.hire@acme.test (invitation)" in render_diff(result.changes).splitlines()
    invitation = Invitation.objects.get(organization=acme, email="new.hire@acme.test")
    assert (invitation.role, [t.key for t in invitation.teams.all()]) == ("executive", ["marketing"])
    assert applied(doc).changes == []
    assert {"email": "new.hire@acme.test", "role": "executive", "teams": ["marketing"]} in fresh_export()["members"]


def test_roles_and_teams_of_existing_members_follow_the_manifest(acme):
    applied(FIXTURE.read_text())
    doc = fresh_export()
    coo = next(m for m in doc["members"] if m["email"] == "coo@acme.test")
    coo["role"], coo["teams"] = "admin", ["leadership", "marketing"]

    applied(doc)

    membership = Membership.objects.get(organization=acme, user__email="coo@acme.test")
    assert membership.role == Role.ADMIN
    assert sorted(membership.teams.values_list("key", flat=True)) == ["leadership", "marketing"]
    assert AuditEvent.objects.filter(verb="member.role_changed", object_id=str(membership.pk)).exists()


def test_the_last_admin_cannot_be_demoted(acme):
    doc = example()
    doc["members"].append({"email": "admin@acme.test", "role": "member"})

    result = apply_manifest(doc)

    assert result.errors.lines() == [
        "members[1].role: admin@acme.test is the last admin; keep an admin in the manifest"
    ]


def test_the_api_refuses_to_demote_the_last_admin_with_422_and_changes_nothing(tenant):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tenant.token}"}
    doc = Client().get("/api/v1/manifest", **auth).json()
    [admin] = [m for m in doc["members"] if m["email"] == tenant.admin.user.email]
    admin["role"] = Role.MEMBER

    response = Client().put("/api/v1/manifest", json.dumps(doc), content_type="application/json", **auth)

    assert response.status_code == 422
    assert f"{tenant.admin.user.email} is the last admin; keep an admin in the manifest" in response.content.decode()
    tenant.admin.refresh_from_db()
    assert tenant.admin.role == Role.ADMIN


def test_prune_archives_what_is_missing_and_deletes_missing_edges(acme):
    applied(FIXTURE.read_text())
    doc = fresh_export()
    doc["dependencies"] = []
    old = KpiFactory(organization=acme, team=Team.objects.get(key="leadership"), key="old.one")
    TeamFactory(organization=acme, key="extra", name="Extra")

    result = applied(doc, prune=True)

    diff = render_diff(result.changes + result.skipped).splitlines()
    assert "- kpi old.one (archive)" in diff
    assert "- dependency mkt.leads -> sc.inventory_turnover (delete)" in diff
    assert "  team extra: not in the manifest, skipped (teams are never pruned)" in diff
    old.refresh_from_db()
    assert old.archived_at is not None
    assert not Dependency.objects.filter(organization=acme).exists()
    assert Team.objects.filter(key="extra").exists()
    assert AuditEvent.objects.filter(verb="kpi.archived", object_id=str(old.pk)).exists()
    assert AuditEvent.objects.filter(verb="dependency.deleted").exists()
    assert applied(doc, prune=True).changes == []


def test_without_prune_missing_objects_are_left_alone(acme):
    applied(FIXTURE.read_text())
    doc = example()
    doc["dependencies"] = []

    assert applied(doc).changes == []
    assert Dependency.objects.filter(organization=acme).count() == 1


def test_a_kpi_named_again_is_restored(acme):
    applied(FIXTURE.read_text())
    doc = fresh_export()
    doc["kpis"] = [k for k in doc["kpis"] if k["key"] != "mkt.leads"]
    doc["dependencies"], doc["scorecards"], doc["data_sources"] = [], [], []
    doc["objectives"][0].pop("key_results")
    applied(doc, prune=True)
    assert Kpi.objects.get(key="mkt.leads").archived_at is not None

    result = applied(FIXTURE.read_text())

    assert "~ kpi mkt.leads: archived true -> false" in render_diff(result.changes).splitlines()
    assert Kpi.objects.get(key="mkt.leads").archived_at is None


def test_a_manifest_never_touches_another_organization(acme):
    globex = make_org("globex")
    globex_team = TeamFactory(organization=globex, key="marketing", name="Marketing")
    stranger = KpiFactory(organization=globex, team=globex_team, key="mkt.leads", name="Globex leads")
    globex_before = fresh_export("globex")

    applied(FIXTURE.read_text(), prune=False)
    doc = fresh_export()
    doc["kpis"] = [k for k in doc["kpis"] if k["key"] != "sc.inventory_turnover"]
    doc["dependencies"], doc["data_sources"] = [], []
    doc["kpis"][0].pop("data_source")
    doc["scorecards"][0]["kpis"] = ["mkt.leads"]
    applied(doc, prune=True)

    stranger.refresh_from_db()
    assert (stranger.name, stranger.archived_at) == ("Globex leads", None)
    assert fresh_export("globex") == globex_before
    assert Kpi.objects.get(organization=globex, key="sc.inventory_turnover").archived_at is None


def test_an_api_token_applies_only_its_own_organization(acme):
    globex = make_org("globex")

    result = apply_manifest(FIXTURE.read_text(), org=globex)

    assert 'organization.slug: this manifest is for "acme", not for "globex"' in result.errors.lines()


def test_only_an_admin_may_apply(acme):
    executive = Membership.objects.get(organization=acme, user__email="ceo@acme.test")

    result = apply_manifest(FIXTURE.read_text(), actor=executive.user)

    assert result.errors.lines() == ["manifest: only an admin of Acme may apply its manifest"]


def test_a_new_slug_creates_the_organization_with_its_first_admin(db):
    founder = UserFactory(email="founder@north.test")
    text = """
version: 1
organization: {slug: north, name: North Wind, timezone: Asia/Tokyo}
teams: [{key: ops, name: Operations, lead: founder@north.test}]
members: [{email: founder@north.test, role: admin, teams: [ops]}, {email: helper@north.test}]
"""

    result = applied(text, admin=founder)

    org = Organization.objects.get(slug="north")
    assert org.memberships.get().user == founder
    assert Team.objects.get(organization=org).lead.user == founder
    assert Invitation.objects.get(organization=org).email == "helper@north.test"
    assert render_diff(result.changes).splitlines()[0] == "+ organization north"
    assert applied(text).changes == []


def test_a_new_slug_without_a_first_admin_is_refused(db):
    result = apply_manifest("version: 1\norganization: {slug: north, name: North}\n")

    assert result.errors.lines() == [
        'organization.slug: no organization "north" exists; to create it, name its first admin '
        "(apply_manifest --admin EMAIL)"
    ]
    assert not Organization.objects.exists()


def test_team_parent_cycles_and_unknown_references_are_refused(acme):
    doc = example()
    doc["teams"] = [
        {"key": "a", "name": "A", "parent": "b"},
        {"key": "b", "name": "B", "parent": "a"},
        {"key": "c", "name": "C", "lead": "stranger@globex.test", "escalation": "missing"},
    ]
    doc["scorecards"][0]["viewers"] = ["role:boss", "team:nowhere", "everyone"]
    doc["escalation_policies"][0]["levels"][0]["notify"] = ["team:nowhere"]
    doc["escalation_policies"][0]["repeat"] = 12

    lines = apply_manifest(doc).errors.lines()

    assert "teams[0].parent: cycle a -> b -> a" in lines
    assert 'teams[2].lead: unknown member "stranger@globex.test"' in lines
    assert 'teams[2].escalation: unknown escalation policy "missing"' in lines
    assert 'scorecards[0].viewers[0]: unknown role "boss"; use admin, executive, member' in lines
    assert 'scorecards[0].viewers[1]: unknown team "nowhere"' in lines
    assert 'scorecards[0].viewers[2]: "everyone" is not one of "role:<role>", "team:<key>", "user:<email>"' in lines
    assert 'escalation_policies[0].levels[0].notify[0]: unknown team "nowhere"' in lines
    assert "escalation_policies[0].repeat: must be from 0 to 9, not 12" in lines


def test_data_sources_never_hold_secrets(acme):
    doc = example()
    doc["data_sources"] = [
        {"key": "a", "kind": "sql", "dsn_secret": "postgres://u:secret@db/x", "every": "1h"},
        {"key": "b", "kind": "http_json", "url": "https://u:secret@api.test/kpis", "every": "1h"},
        {"key": "c", "kind": "http_json", "dsn_env": "X", "every": "1h"},
    ]
    doc["kpis"][0].pop("data_source")

    lines = apply_manifest(doc).errors.lines()

    assert not any("u:secret" in line for line in lines)  # errors never repeat a pasted secret
    assert "data_sources[1].url: must not carry credentials; secrets never appear in a manifest" in lines
    assert "data_sources[2].url: is required for kind http_json" in lines
    assert "data_sources[2].dsn_env: is not used by kind http_json" in lines
    assert (
        "data_sources[0].dsn_secret: must name an organization secret (a-z, 0-9 and _), not hold the secret itself"
        in lines
    )


def test_a_source_names_a_variable_of_the_workers_only_when_the_operator_granted_it(acme, settings):
    doc = example()
    doc["data_sources"][0].pop("dsn_secret")
    doc["data_sources"][0]["dsn_env"] = "WAREHOUSE_DSN"

    assert apply_manifest(doc).errors.lines() == [
        "data_sources[0].dsn_env: WAREHOUSE_DSN is not granted to this organization by the operator "
        "(PULL_ENV_GRANTS): set the value as an organization secret (Administration → Secrets) and name it in "
        "dsn_secret"
    ]
    settings.PULL_ENV_GRANTS = {"globex:WAREHOUSE_DSN"}  # another organization's grant is not acme's
    assert not apply_manifest(doc).ok

    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    applied(doc)
    assert DataSource.objects.get(organization=acme, key="warehouse").config["dsn_env"] == "WAREHOUSE_DSN"
    assert fresh_export()["data_sources"][0]["dsn_env"] == "WAREHOUSE_DSN"


def test_a_sql_source_names_its_database_address_once(acme, settings):
    settings.PULL_ENV_GRANTS = {"acme:WAREHOUSE_DSN"}
    doc = example()
    doc["data_sources"][0]["dsn_env"] = "WAREHOUSE_DSN"
    both = apply_manifest(doc).errors.lines()
    doc["data_sources"][0].pop("dsn_env")
    doc["data_sources"][0].pop("dsn_secret")
    neither = apply_manifest(doc).errors.lines()
    expected = [
        "data_sources[0].dsn_secret: name the organization secret holding the database URL (or a granted "
        "dsn_env), one of them"
    ]
    assert both == neither == expected


def test_a_dated_target_and_range_thresholds_round_trip(acme):
    doc = example()
    doc["kpis"][0]["target"] = {"value": 1200, "by": "2026-12-31", "baseline": {"value": 800, "at": "2026-10-01"}}
    doc["kpis"][0]["thresholds"] = {"warning": "95%", "critical": "80%"}
    doc["kpis"][0]["forecast"] = True
    doc["kpis"].append(
        {
            "key": "ops.temp",
            "name": "Warehouse temperature",
            "team": "marketing",
            "owner": "ceo@acme.test",
            "direction": "range",
            "thresholds": {"warning": [18, 22.5], "critical": [15, 25]},
            "recovery_margin": 0.5,
        }
    )

    applied(doc)

    kpi = Kpi.objects.get(key="mkt.leads")
    assert (str(kpi.target_by), kpi.baseline_value, str(kpi.baseline_at)) == ("2026-12-31", 800, "2026-10-01")
    assert Kpi.objects.get(key="ops.temp").recovery_margin == "0.5"
    assert applied(fresh_export()).changes == []
    assert applied(doc).changes == []


def test_the_apply_command_prints_the_diff(acme, tmp_path):
    out = StringIO()
    call_command("apply_manifest", str(FIXTURE), "--dry-run", stdout=out)
    assert "+ kpi mkt.leads" in out.getvalue().splitlines()
    assert out.getvalue().rstrip().endswith("Dry run: nothing changed.")
    assert not Kpi.objects.filter(key="mkt.leads").exists()

    out = StringIO()
    call_command("apply_manifest", str(FIXTURE), stdout=out)
    assert Kpi.objects.filter(key="mkt.leads").exists()

    out = StringIO()
    call_command("apply_manifest", str(FIXTURE), stdout=out)
    assert out.getvalue().strip() == "No changes."


def test_the_apply_command_lists_every_error_and_fails(acme, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    err = StringIO()

    with pytest.raises(CommandError, match="12 error"):
        call_command("apply_manifest", str(path), stdout=StringIO(), stderr=err)

    lines = err.getvalue().splitlines()
    assert len(lines) == 12
    assert "kpis[2].thresholds: warning must be above critical for direction increase" in lines


def test_the_apply_command_creates_an_organization_for_its_admin(db, tmp_path):
    UserFactory(email="founder@north.test")
    path = tmp_path / "north.yaml"
    path.write_text("version: 1\norganization: {slug: north, name: North}\n")

    with pytest.raises(CommandError):
        call_command("apply_manifest", str(path), stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="No user has the email nobody@north.test"):
        call_command("apply_manifest", str(path), "--admin", "nobody@north.test", stdout=StringIO())
    call_command("apply_manifest", str(path), "--admin", "founder@north.test", stdout=StringIO())

    assert Organization.objects.get(slug="north").memberships.get().role == Role.ADMIN


def test_the_export_command_prints_yaml_that_applies_as_a_no_op(acme, tmp_path):
    applied(FIXTURE.read_text())
    out = StringIO()

    call_command("export_manifest", "--org", "acme", stdout=out)

    assert yaml.safe_load(out.getvalue()) == fresh_export()
    assert "aggregate: {fn: sum, window: 1w}" in out.getvalue()
    path = tmp_path / "exported.yaml"
    path.write_text(out.getvalue())
    out = StringIO()
    call_command("apply_manifest", str(path), stdout=out)
    assert out.getvalue().strip() == "No changes."
    with pytest.raises(CommandError, match='No organization has the slug "nope"'):
        call_command("export_manifest", "--org", "nope", stdout=StringIO())


def test_json_is_read_like_yaml(acme):
    import json

    dry = applied(json.dumps(example(), default=str), dry_run=True)

    assert "+ kpi mkt.leads" in render_diff(dry.changes)


def test_policies_levels_follow_the_manifest(acme):
    applied(FIXTURE.read_text())
    doc = example()
    doc["escalation_policies"][0]["levels"] = [{"notify": ["owner"], "wait": "4h"}]

    result = applied(doc)

    policy = EscalationPolicy.objects.get(key="standard")
    assert [(lv.position, lv.targets) for lv in policy.levels.all()] == [(1, ["owner"])]
    assert result.changes[0].kind == "escalation_policy"
    assert AuditEvent.objects.filter(verb="escalation_policy.updated").exists()


def test_key_results_and_members_are_checked(acme):
    Membership.objects.filter(user__email="coo@acme.test").update(is_active=False)
    doc = example()
    doc["members"].append({"email": "coo@acme.test", "role": "executive"})
    doc["objectives"][0]["key_results"] += [
        {"key": "kr.manual", "title": "Manual", "start": 0, "target": 10},
        {"key": "kr.leads", "title": "Again", "owner": "ceo@acme.test", "start": 1, "target": 1},
    ]
    doc["objectives"][0]["period"] = {"start": "2026-12-31", "end": "2026-10-01"}

    lines = apply_manifest(doc).errors.lines()

    assert lines == [
        "members[1].email: coo@acme.test is a deactivated member; reactivate them in the app first",
        "escalation_policies[0].levels[1].notify[1]: coo@acme.test is a deactivated member",
        "objectives[0].period.end: the period must not end before it starts",
        "objectives[0].key_results[1].owner: is required when no kpi is linked (its owner checks values in)",
        "objectives[0].key_results[2].target: must differ from start",
        'objectives[0].key_results[2].key: duplicate key "kr.leads" (also objectives[0].key_results[0])',
    ]


def test_a_write_refused_while_applying_undoes_the_whole_apply(acme):
    applied(FIXTURE.read_text())
    doc = fresh_export()
    # Swapping two team names passes validation but the first rename meets the other team's name.
    doc["teams"][0]["name"], doc["teams"][1]["name"] = "Marketing", "Leadership"
    doc["kpis"][0]["name"] = "Renamed"
    before = row_counts()

    result = apply_manifest(doc)

    assert result.errors and result.errors[0][1].startswith("could not apply: ")
    assert row_counts() == before
    assert Kpi.objects.get(key="mkt.leads").name == "Qualified leads per week"


# --- http_json data sources -----------------------------------------------------------------------


def http_source() -> dict:
    return {
        "key": "crm",
        "kind": "http_json",
        "url": "https://crm.example.test/api/kpis?since={since}",
        "headers_secret": {"Authorization": "crm_token", "X-Tenant": "crm_tenant"},
        "every": "15m",
        "pulls": [
            {"kpi": "mkt.leads", "items": "data.rows", "at": "day", "value": "leads"},
            {"kpi": "sc.inventory_turnover", "at": "at", "value": "turnover"},
        ],
    }


def test_an_http_json_source_round_trips_and_export_then_apply_is_a_no_op(acme):
    doc = example()
    doc["data_sources"].append(http_source())

    applied(doc)

    source = DataSource.objects.get(organization=acme, key="crm")
    assert (source.kind, source.every) == ("http_json", timedelta(minutes=15))
    assert source.config == {key: http_source()[key] for key in ("url", "headers_secret", "pulls")}
    exported = fresh_export()
    sources = {source["key"]: source for source in exported["data_sources"]}
    assert sources["crm"] == http_source()  # no items where the answer itself is the list
    assert "headers_secret" not in sources["warehouse"]
    assert applied(exported).changes == []
    assert applied(dump_yaml(exported)).changes == []
    assert applied(doc).changes == []


def sheet_source() -> dict:
    return {
        "key": "targets",
        "kind": "spreadsheet",
        "url": "https://docs.google.com/spreadsheets/d/e/2PACX-1/pub?output=csv",
        "every": "1h",
        "pulls": [
            {"kpi": "mkt.leads", "at": "Week", "value": "Leads"},
            {"kpi": "sc.inventory_turnover", "at": "at", "value": "value", "kpi_column": "kpi"},
        ],
    }


def test_a_spreadsheet_source_round_trips_and_export_then_apply_is_a_no_op(acme):
    doc = example()
    doc["data_sources"].append(sheet_source())

    applied(doc)

    source = DataSource.objects.get(organization=acme, key="targets")
    assert source.config == {key: sheet_source()[key] for key in ("url", "pulls")}
    exported = fresh_export()
    assert {s["key"]: s for s in exported["data_sources"]}["targets"] == sheet_source()
    assert applied(exported).changes == []


def test_a_spreadsheet_source_reports_a_bad_url_once_and_refuses_the_fields_of_other_kinds(acme):
    doc = example()
    sheet = sheet_source() | {"url": "ftp://sheets.test/x.csv", "headers_secret": {"Authorization": "token"}}
    sheet["pulls"][0] = {"kpi": "mkt.leads", "items": "rows", "value": "Leads"}
    doc["data_sources"].append(sheet)

    lines = apply_manifest(doc).errors.lines()

    assert lines == [
        "data_sources[1].url: must be an http or https address",
        "data_sources[1].headers_secret: is not used by kind spreadsheet",
        "data_sources[1].pulls[0].at: is required",
        "data_sources[1].pulls[0].items: is not used by kind spreadsheet",
    ]


def test_data_source_fields_of_the_other_kind_are_errors_with_their_path(acme):
    doc = example()
    doc["data_sources"][0]["headers_secret"] = {"Authorization": "crm_token"}
    doc["data_sources"][0]["pulls"][0] |= {"at": "day", "value": "n"}
    crm = http_source()
    crm["headers_secret"] = {"Authorization": "Bearer s3cr3t-token", "Bad Header": "x", "x-tenant": "Upper"}
    crm["pulls"] = [
        {"kpi": "mkt.leads", "query": "select 1", "at": "day", "value": "leads"},
        {"kpi": "sc.inventory_turnover", "items": "data..rows", "at": "at"},
    ]
    doc["data_sources"].append(crm)

    lines = apply_manifest(doc).errors.lines()

    assert not any("s3cr3t-token" in line for line in lines)  # errors never repeat a pasted secret
    assert lines == [
        "data_sources[0].headers_secret: is not used by kind sql",
        "data_sources[0].pulls[0].at: is not used by kind sql",
        "data_sources[0].pulls[0].value: is not used by kind sql",
        "data_sources[1].headers_secret.Authorization: must name an organization secret (a-z, 0-9 and _), "
        "not hold the secret itself",
        "data_sources[1].headers_secret: 'Bad Header' is not an HTTP header name",
        "data_sources[1].headers_secret.x-tenant: must name an organization secret (a-z, 0-9 and _), "
        "not hold the secret itself",
        "data_sources[1].pulls[0].query: is not used by kind http_json",
        "data_sources[1].pulls[1].value: is required",
        'data_sources[1].pulls[1].items: "data..rows": must be a dotted path to the list, like data.rows',
    ]


def test_a_changed_source_is_pulled_at_the_next_sweep_without_its_old_backoff(acme):
    applied(FIXTURE.read_text())
    DataSource.objects.filter(key="warehouse").update(failures=3, next_run_at="2026-12-01T00:00:00Z")
    doc = example()
    doc["data_sources"][0]["every"] = "30m"

    applied(doc)

    source = DataSource.objects.get(key="warehouse")
    assert (source.every, source.failures, source.next_run_at) == (timedelta(minutes=30), 0, None)

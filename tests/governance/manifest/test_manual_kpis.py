"""A manifest declares a KPI manual: `manual: {period, updaters, approver}` (scorecards.manifest.kpis)."""

from __future__ import annotations

from datetime import timedelta

from governance.manifest.document import dump_yaml
from governance.manifest.engine import apply_manifest
from governance.models import AuditEvent, Role
from scorecards.models import Kpi, ManualKpi
from tests.factories import MembershipFactory
from tests.governance.manifest.test_manifest import acme, applied, example, fresh_export  # noqa: F401

MANUAL = {
    "key": "fin.nps",
    "name": "Net promoter score",
    "team": "marketing",
    "owner": "vp.marketing@acme.test",
    "thresholds": {"warning": 40, "critical": 20},
    "manual": {"period": "quarterly", "updaters": ["coo@acme.test"], "approver": "ceo@acme.test"},
}


def with_kpi(kpi: dict) -> dict:
    doc = example()
    doc["kpis"].append(kpi)
    return doc


def test_a_manual_kpi_round_trips_and_export_then_apply_is_a_no_op(acme):  # noqa: F811
    applied(with_kpi(MANUAL))

    manual = ManualKpi.objects.select_related("kpi", "approver__user").get(kpi__key="fin.nps")
    assert (manual.period, manual.approver.user.email, manual.approver_role) == ("quarterly", "ceo@acme.test", "")
    assert [m.user.email for m in manual.updaters.all()] == ["coo@acme.test"]
    # A period is the cadence, and two periods without a confirmed value make it stale.
    assert (manual.kpi.cadence, manual.kpi.stale_after) == (timedelta(days=92), timedelta(days=184))
    exported = fresh_export()
    kpi = next(k for k in exported["kpis"] if k["key"] == "fin.nps")
    assert kpi["manual"] == MANUAL["manual"] and "cadence" not in kpi and "stale_after" not in kpi
    assert applied(exported).changes == []
    assert applied(dump_yaml(exported)).changes == []
    assert AuditEvent.objects.filter(verb="kpi.manual_set").count() == 1


def test_the_defaults_are_monthly_the_owner_and_a_role_may_approve(acme):  # noqa: F811
    applied(with_kpi(MANUAL | {"manual": {"approver": "role:executive"}}))

    manual = ManualKpi.objects.get(kpi__key="fin.nps")
    assert (manual.period, manual.approver_id, manual.approver_role) == ("monthly", None, Role.EXECUTIVE)
    assert not manual.updaters.exists()
    assert Kpi.objects.get(key="fin.nps").stale_after == timedelta(days=62)
    kpi = next(k for k in fresh_export()["kpis"] if k["key"] == "fin.nps")
    assert kpi["manual"] == {"period": "monthly", "updaters": [], "approver": "role:executive"}
    assert applied(fresh_export()).changes == []


def test_a_change_of_approver_is_an_update_and_removing_manual_ends_it(acme):  # noqa: F811
    MembershipFactory(organization=acme, user__email="cfo@acme.test")
    applied(with_kpi(MANUAL))
    result = applied(with_kpi(MANUAL | {"manual": MANUAL["manual"] | {"approver": "cfo@acme.test"}}))
    assert [(c.action, c.changed) for c in result.changes] == [("update", ["manual"])]
    assert ManualKpi.objects.get().approver.user.email == "cfo@acme.test"

    plain = {key: value for key, value in MANUAL.items() if key != "manual"}
    applied(with_kpi(plain | {"cadence": "92d", "stale_after": "184d"}))
    assert not ManualKpi.objects.exists()
    assert AuditEvent.objects.filter(verb="kpi.manual_removed").count() == 1


def test_four_eyes_and_bad_manual_declarations_are_errors_with_their_path(acme):  # noqa: F811
    bad = [
        MANUAL | {"manual": {"approver": "vp.marketing@acme.test"}},  # the owner
        MANUAL | {"key": "a", "manual": {"updaters": ["coo@acme.test"], "approver": "coo@acme.test"}},
        MANUAL | {"key": "b", "manual": {"period": "daily", "approver": "role:boss"}},
        MANUAL | {"key": "c", "manual": {"updaters": ["ghost@acme.test"]}},
        MANUAL | {"key": "d", "data_source": "warehouse"},
    ]
    doc = example()
    doc["kpis"] += bad
    before = Kpi.objects.count()

    result = apply_manifest(doc)

    assert Kpi.objects.count() == before and not ManualKpi.objects.exists()
    lines = set(result.errors.lines())
    assert lines >= {
        "kpis[1].manual.approver: four eyes: the approver must not be the owner or an updater",
        "kpis[2].manual.approver: four eyes: the approver must not be the owner or an updater",
        'kpis[3].manual.period: "daily" is not one of weekly, monthly, quarterly',
        'kpis[3].manual.approver: unknown role "boss"; use admin, executive, member',
        'kpis[4].manual.updaters[0]: unknown member "ghost@acme.test"',
        "kpis[4].manual.approver: is required",
        "kpis[5].manual: a manual KPI's values are entered by people; it takes no data_source",
    }, lines

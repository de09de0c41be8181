"""The `kpis` list.

Defaults when a field is omitted (the export leaves out the fields equal to them): unit "", direction increase,
aggregate {fn: last}, no target, cadence 1d, stale_after 3 x cadence, evaluate_every 1h, pending_for 0m, keep_for
0m, no recovery_margin, no surge, forecast false, no escalation (the team's policy applies, else the
organization's default), no data_source (push via the API).

Decisions where MANIFEST.md is silent:
- `target` is a number, or {value, by, baseline: {value, at}} with `value` required; a baseline needs `by` and
  must come before it (as the KPI form says). A mapping with only `value` reads as the number.
- `recovery_margin` and `surge.change` are amounts (values.py).
- `surge` needs both `change` and `window`; every window and every cadence-like duration is longer than 0m.
- `formula` makes a calculated KPI (scorecards.formulas): its names must be live KPIs of this organization, its
  units must agree, it may not name its own KPI and takes no data_source. Cycles through formulas and declared
  edges are the dependencies section's check (dependencies.manifest), which also keeps the "computed from" edges.
- A KPI's owner change goes through ownership_transfer_direct, recorded as an approved transfer whose reason
  carries the manifest's sha256.
- `manual: {period, updaters, approver}` declares an attested manual KPI (docs/manual-values.md): period weekly,
  monthly (the default) or quarterly; updaters are members (the owner always is one); the approver, required, is a
  member's email or "role:<role>" and never the owner nor an updater (four eyes). A manual KPI has no data_source;
  its cadence defaults to one period (7d, 31d, 92d) and its stale_after to two, so a period left without a confirmed
  value makes it stale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from governance.durations import format_duration, parse_duration
from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry, num
from governance.manifest.sections import KeyedSection
from governance.manifest.targets import member_problem
from governance.models import Organization, Role, Team
from scorecards import formulas
from scorecards.aggregations import AGGREGATIONS, LAST
from scorecards.evaluation.thresholds import ThresholdError, parse_thresholds
from scorecards.manifest.values import (
    day_form,
    day_value,
    duration_form,
    duration_value,
    read_amount,
    stored_amount,
    stored_thresholds,
    thresholds_form,
)
from scorecards.models import DataSource, Direction, Kpi, Period
from scorecards.services import PERIOD_LENGTH, kpi_create, kpi_update, manual_kpi_set, ownership_transfer_direct


def _times(cadence: str | None, n: int) -> str | None:
    return format_duration(n * parse_duration(cadence)) if cadence else None


def _triple(cadence: str | None) -> str | None:
    return _times(cadence, 3)


def _cadence_default(manual: dict | None) -> str:
    if not manual or manual["period"] not in PERIOD_LENGTH:  # a wrong period is an error of its own
        return "1d"
    return format_duration(PERIOD_LENGTH[manual["period"]])


def _stale_default(cadence: str | None, manual: dict | None) -> str | None:
    # A manual KPI is stale once a whole period has passed without a confirmed value for the one before.
    return _times(cadence, 2) if manual else _triple(cadence)


class KpisSection(KeyedSection):
    field, kind, model = "kpis", "kpi", Kpi
    entry_fields = (
        "key",
        "name",
        "team",
        "owner",
        "unit",
        "direction",
        "aggregate",
        "target",
        "thresholds",
        "cadence",
        "stale_after",
        "evaluate_every",
        "pending_for",
        "keep_for",
        "recovery_margin",
        "surge",
        "forecast",
        "escalation",
        "data_source",
        "formula",
        "manual",
    )
    required = ("key", "name", "team", "owner", "thresholds")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        direction = entry.text("direction", default=Direction.INCREASE, choices=Direction.values)
        target = self._target(entry)
        manual = self._manual(entry, ctx)
        cadence = entry.duration("cadence", default=_cadence_default(manual), positive=True)
        return {
            "key": entry.key(),
            "name": entry.text("name"),
            "team": entry.ref("team", ctx, "teams"),
            "owner": entry.member("owner", ctx),
            "unit": entry.text("unit", default="", max_length=32),
            "direction": direction,
            "aggregate": self._aggregate(entry),
            "target": target,
            "thresholds": self._thresholds(entry, direction, target),
            "cadence": cadence,
            "stale_after": entry.duration("stale_after", default=_stale_default(cadence, manual), positive=True),
            "evaluate_every": entry.duration("evaluate_every", default="1h", positive=True),
            "pending_for": entry.duration("pending_for", default="0m"),
            "keep_for": entry.duration("keep_for", default="0m"),
            "recovery_margin": read_amount(entry, "recovery_margin"),
            "surge": self._surge(entry),
            "forecast": entry.boolean("forecast"),
            "escalation": entry.ref("escalation", ctx, "escalation_policies"),
            "data_source": entry.ref("data_source", ctx, "data_sources"),
            "formula": entry.text("formula", max_length=formulas.MAX_LENGTH),
            "manual": manual,
        }

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        """Formulas against every KPI a formula may name: the document's and, unless pruned, the stored ones."""
        if not any(data["formula"] for data in desired.values()):
            return
        units = {}
        if ctx.org is not None and not ctx.prune:
            units = dict(Kpi.objects.for_org(ctx.org).filter(archived_at=None).values_list("key", "unit"))
        units.update({key: data["unit"] for key, data in desired.items()})
        for key, data in desired.items():
            if not data["formula"]:
                continue
            path = f"{self.paths[key]}.formula"
            try:
                formula = formulas.parse(data["formula"], keys=units)
                formulas.check_unit(formula, data["unit"] or "")
            except formulas.FormulaError as e:
                ctx.errors.add(path, str(e))
                continue
            if key in formula.keys:
                ctx.errors.add(path, "a formula cannot use its own KPI")
            if data["data_source"]:
                ctx.errors.add(path, "a calculated KPI takes its values from its formula, not from a data_source")
            if data["manual"]:
                ctx.errors.add(path, "a calculated KPI takes its values from its formula, not from people (manual)")

    def _manual(self, entry: Entry, ctx: Context) -> dict | None:
        manual = entry.mapping("manual", fields=("period", "updaters", "approver"), required=("approver",))
        if manual is None:
            return None
        if entry.has("data_source"):
            entry.error("manual", "a manual KPI's values are entered by people; it takes no data_source")
        period = manual.text("period", default=Period.MONTHLY, choices=Period.values)
        owner = (entry.raw.get("owner") or "").strip().lower() if isinstance(entry.raw.get("owner"), str) else ""
        updaters = sorted(e.lower() for e in manual.strings("updaters", check=lambda e: member_problem(e.lower(), ctx)))
        approver = manual.text("approver", max_length=254) or ""
        if approver.startswith("role:"):
            if approver[5:] not in Role.values:
                manual.error("approver", f'unknown role "{approver[5:]}"; use {", ".join(Role.values)}')
        elif approver:
            approver = approver.removeprefix("user:").lower()
            if problem := member_problem(approver, ctx):
                manual.error("approver", problem)
            elif approver == owner or approver in updaters:
                manual.error("approver", "four eyes: the approver must not be the owner or an updater")
        return {"period": period, "updaters": updaters, "approver": approver}

    def _aggregate(self, entry: Entry) -> dict:
        aggregate = entry.mapping("aggregate", fields=("fn", "window"), required=("fn",))
        if aggregate is None:
            return {"fn": LAST}
        fn = aggregate.text("fn", default=LAST, choices=list(AGGREGATIONS))
        window = aggregate.duration("window", positive=True)
        return {"fn": fn, "window": window} if window else {"fn": fn}

    def _target(self, entry: Entry) -> Any:
        raw = entry.raw.get("target")
        if not isinstance(raw, dict):
            if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int | float)):
                entry.error("target", f"must be a number or a mapping with value, by and baseline, not {raw!r}")
                return None
            return entry.number("target")
        target = entry.mapping("target", fields=("value", "by", "baseline"), required=("value",))
        value, by = target.number("value"), target.day("by")
        base = target.mapping("baseline", fields=("value", "at"), required=("value", "at"))
        baseline = {"value": base.number("value"), "at": base.day("at")} if base else None
        if baseline and not target.has("by"):
            target.error("baseline", "a baseline only makes sense with a dated target (by)")
        elif baseline and baseline["at"] and by and baseline["at"] >= by:
            base.error("at", "the baseline must come before the target date (by)")
        if by is None and baseline is None:
            return value
        return {"value": value, "by": by, **({"baseline": baseline} if baseline else {})}

    def _thresholds(self, entry: Entry, direction: str | None, target: Any) -> Any:
        raw = entry.raw.get("thresholds")
        if raw is None or direction not in Direction.values:
            return None
        try:
            spec = parse_thresholds(direction, raw, has_target=target is not None)
        except ThresholdError as e:
            entry.error("thresholds", str(e))
            return None
        return thresholds_form(spec)

    def _surge(self, entry: Entry) -> dict | None:
        surge = entry.mapping("surge", fields=("change", "window"), required=("change", "window"))
        if surge is None:
            return None
        return {"change": read_amount(surge, "change"), "window": surge.duration("window", positive=True)}

    def stored(self, org: Organization) -> Iterable[Kpi]:
        return (
            Kpi.objects.for_org(org)
            .select_related("team", "owner__user", "data_source", "manual__approver__user")
            .prefetch_related("manual__updaters__user")
        )

    def canonical(self, kpi: Kpi) -> dict:
        return {
            "key": kpi.key,
            "name": kpi.name,
            "team": kpi.team.key,
            "owner": kpi.owner.user.email.lower(),
            "unit": kpi.unit,
            "direction": kpi.direction,
            "aggregate": {
                "fn": kpi.aggregate_fn,
                **({"window": duration_form(kpi.aggregate_window)} if kpi.aggregate_window else {}),
            },
            "target": self._stored_target(kpi),
            "thresholds": stored_thresholds(kpi.direction, kpi.thresholds),
            "cadence": duration_form(kpi.cadence),
            "stale_after": duration_form(kpi.stale_after),
            "evaluate_every": duration_form(kpi.evaluate_every),
            "pending_for": duration_form(kpi.pending_for),
            "keep_for": duration_form(kpi.keep_for),
            "recovery_margin": stored_amount(kpi.recovery_margin),
            "surge": (
                {"change": stored_amount(kpi.surge_change), "window": duration_form(kpi.surge_window)}
                if kpi.surge_change or kpi.surge_window
                else None
            ),
            "forecast": kpi.forecast,
            "escalation": kpi.escalation or None,
            "data_source": kpi.data_source.key if kpi.data_source else None,
            "formula": kpi.formula or None,
            "manual": self._stored_manual(kpi),
        }

    def _stored_manual(self, kpi: Kpi) -> dict | None:
        manual = getattr(kpi, "manual", None)
        if manual is None:
            return None
        return {
            "period": manual.period,
            "updaters": sorted(m.user.email.lower() for m in manual.updaters.all()),
            "approver": manual.approver.user.email.lower() if manual.approver_id else f"role:{manual.approver_role}",
        }

    def _stored_target(self, kpi: Kpi) -> Any:
        value = num(kpi.target_value) if kpi.target_value is not None else None
        if kpi.target_by is None and kpi.baseline_value is None and kpi.baseline_at is None:
            return value
        target = {"value": value, "by": day_form(kpi.target_by)}
        if kpi.baseline_value is not None or kpi.baseline_at is not None:
            baseline_value = num(kpi.baseline_value) if kpi.baseline_value is not None else None
            target["baseline"] = {"value": baseline_value, "at": day_form(kpi.baseline_at)}
        return target

    def defaults(self, data: dict) -> dict:
        return {
            "unit": "",
            "direction": Direction.INCREASE,
            "aggregate": {"fn": LAST},
            "target": None,
            "cadence": _cadence_default(data["manual"]),
            "stale_after": _stale_default(data["cadence"], data["manual"]),
            "evaluate_every": "1h",
            "pending_for": "0m",
            "keep_for": "0m",
            "recovery_margin": None,
            "surge": None,
            "forecast": False,
            "escalation": None,
            "data_source": None,
            "formula": None,
            "manual": None,
        }

    def _settings(self, data: dict, ctx: Context) -> dict:
        """The KPI's fields (as kpi_create and kpi_update take them) from its canonical form."""
        target = data["target"] if isinstance(data["target"], dict) else {"value": data["target"]}
        baseline = target.get("baseline") or {}
        surge = data["surge"] or {}
        return {
            "name": data["name"],
            "team": ctx.get(Team, data["team"]),
            "unit": data["unit"],
            "direction": data["direction"],
            "aggregate_fn": data["aggregate"]["fn"],
            "aggregate_window": duration_value(data["aggregate"].get("window")),
            "target_value": target.get("value"),
            "target_by": day_value(target.get("by")),
            "baseline_value": baseline.get("value"),
            "baseline_at": day_value(baseline.get("at")),
            "thresholds": data["thresholds"],
            "cadence": duration_value(data["cadence"]),
            "stale_after": duration_value(data["stale_after"]),
            "evaluate_every": duration_value(data["evaluate_every"]),
            "pending_for": duration_value(data["pending_for"]),
            "keep_for": duration_value(data["keep_for"]),
            "recovery_margin": "" if data["recovery_margin"] is None else str(data["recovery_margin"]),
            "surge_change": str(surge["change"]) if surge else "",
            "surge_window": duration_value(surge.get("window")),
            "forecast": data["forecast"],
            "escalation": data["escalation"] or "",
            "data_source": ctx.get(DataSource, data["data_source"]) if data["data_source"] else None,
            "formula": data["formula"] or "",
        }

    def create(self, change: Change, ctx: Context) -> None:
        data = change.data
        kpi = kpi_create(
            actor=ctx.actor,
            organization=ctx.org,
            key=data["key"],
            owner=ctx.membership(data["owner"]),
            **self._settings(data, ctx),
        )
        if data["manual"]:
            self._set_manual(kpi, data, ctx)
        ctx.remember(kpi)

    def _set_manual(self, kpi: Kpi, data: dict, ctx: Context) -> None:
        manual = data["manual"]
        if manual is None:
            manual_kpi_set(kpi=kpi, actor=ctx.actor, period=None)
            return
        approver = manual["approver"]
        manual_kpi_set(
            kpi=kpi,
            actor=ctx.actor,
            period=manual["period"],
            updaters=[ctx.membership(email) for email in manual["updaters"]],
            approver=None if approver.startswith("role:") else ctx.membership(approver),
            approver_role=approver.removeprefix("role:") if approver.startswith("role:") else "",
        )

    def update(self, change: Change, ctx: Context) -> None:
        kpi, data = change.obj, change.data
        if "owner" in change.changed:
            # The owner is locked: the manifest changes it as an approved, audited transfer.
            ownership_transfer_direct(
                kpi=kpi, to_owner=ctx.membership(data["owner"]), actor=ctx.decider, reason=ctx.reason
            )
        if "manual" in change.changed:
            self._set_manual(kpi, data, ctx)
        rest = [name for name in change.changed if name not in ("owner", "manual")]
        if not rest:
            return
        settings = self._settings(data, ctx)
        if "archived" in rest:
            settings["archived_at"] = None
        kpi_update(kpi=kpi, actor=ctx.actor, **settings)
        if "archived" in rest:
            ctx.audit("kpi.restored", kpi)

    def archive(self, change: Change, ctx: Context) -> None:
        kpi_update(kpi=change.obj, actor=ctx.actor, archived_at=timezone.now())
        ctx.audit("kpi.archived", change.obj)

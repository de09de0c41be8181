"""The scorecards part of the organization manifest: kpis, objectives (with key_results), scorecards, data_sources.

Defaults when a field is omitted (the export leaves out the fields equal to them):
- kpis: unit "", direction increase, aggregate {fn: last}, no target, cadence 1d, stale_after 3 x cadence,
  evaluate_every 1h, pending_for 0m, keep_for 0m, no recovery_margin, no surge, forecast false, no
  escalation (the team's policy applies, else the organization's default), no data_source (push via the API).
- objectives: parent null, key_results []; a key result links a kpi or names an owner (or both).
- scorecards: kpis [], teams [], viewers [] (every member sees it).
- data_sources: headers_secret {}, headers_env {}, pulls []; a pull's items absent (the JSON answer itself is
  the list).

Decisions where MANIFEST.md is silent:
- `target` is a number, or {value, by, baseline: {value, at}} with `value` required; a baseline needs `by` and
  must come before it (as the KPI form says). A mapping with only `value` reads as the number.
- `recovery_margin` and `surge.change` are a number in the KPI's unit (5, or "5") or a percentage ("2%"),
  never negative; stored as text ("5", "2%") and exported as the number or the percentage.
- `surge` needs both `change` and `window`; every window and every cadence-like duration is longer than 0m.
- Thresholds are checked by scorecards.evaluation.thresholds.parse_thresholds and stored in its canonical shape.
- A data source of kind sql names its database address: an organization secret (`dsn_secret`) or, only when
  the operator granted the variable to the organization (PULL_ENV_GRANTS), an environment variable (`dsn_env`);
  exactly one of them, and no url. http_json names a `url` without credentials and optional headers, each from a
  secret (`headers_secret` {header: secret}) or a granted variable (`headers_env` {header: variable}). A secret
  need not be set yet when the manifest is applied: the source's runs say which one to set. Pulls of sql
  sources are {kpi, query}; of http_json sources {kpi, items (optional dotted path), at, value}. A field of
  the other kind is an error. Everything but kind and every is kept in DataSource.config; a created or
  changed source is pulled at the next sweep (its backoff forgotten).
- A KPI's owner change goes through ownership_transfer_direct, recorded as an approved transfer whose reason
  carries the manifest's sha256.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from django.utils import timezone

from governance.durations import format_duration, parse_duration
from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry, num
from governance.manifest.graph import parents_first, report_parent_cycles
from governance.manifest.sections import KeyedSection, strip_defaults
from governance.manifest.targets import canonical_target, target_problem, team_problem
from governance.models import Organization, Team
from scorecards.aggregations import AGGREGATIONS, LAST
from scorecards.connectors.base import Connector
from scorecards.connectors.names import Names
from scorecards.connectors.registry import CONNECTORS, config_fields, connector_kind, pull_fields
from scorecards.evaluation.thresholds import PERCENT, Level, ThresholdError, ThresholdSpec, parse_thresholds
from scorecards.models import DataSource, Direction, KeyResult, Kpi, Objective, Scorecard
from scorecards.services import (
    key_result_create,
    kpi_create,
    kpi_update,
    objective_create,
    objective_update,
    ownership_transfer_direct,
)


def _duration(text: str | None) -> timedelta | None:
    return parse_duration(text) if text else None


def _format(value: timedelta | None) -> str | None:
    return format_duration(value) if value is not None else None


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _triple(cadence: str | None) -> str | None:
    return format_duration(3 * parse_duration(cadence)) if cadence else None


# --- amounts and thresholds ---------------------------------------------------------------------


def parse_amount(raw: object) -> tuple[float, bool] | None:
    """A number in the KPI's unit (5 or "5") or a percentage ("2%"): (value, is_percentage), or None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return (float(raw), False) if math.isfinite(raw) else None
    if isinstance(raw, str):
        match = PERCENT.match(raw)
        if match:
            return float(match.group(1)), True
        try:
            value = float(raw)
        except ValueError:
            return None
        return (value, False) if math.isfinite(value) else None
    return None


def amount_form(value: float, relative: bool) -> str | float | int:
    return f"{num(value)}%" if relative else num(value)


def stored_amount(text: str) -> str | float | int | None:
    if not text:
        return None
    parsed = parse_amount(text)
    return amount_form(*parsed) if parsed else text


def read_amount(entry: Entry, name: str) -> str | float | int | None:
    raw = entry.raw.get(name)
    if raw is None:
        return None
    parsed = parse_amount(raw)
    if parsed is None:
        entry.error(name, f'must be a number in the KPI\'s unit or a percentage like "2%", not {raw!r}')
        return None
    if parsed[0] < 0:
        entry.error(name, "must not be negative")
    return amount_form(*parsed)


def _level_form(level: Level) -> Any:
    if isinstance(level.value, tuple):
        return [amount_form(level.value[0], level.relative), amount_form(level.value[1], level.relative)]
    return amount_form(level.value, level.relative)


def thresholds_form(spec: ThresholdSpec) -> dict:
    return {"warning": _level_form(spec.warning), "critical": _level_form(spec.critical)}


def stored_thresholds(direction: str, raw: object) -> object:
    try:
        return thresholds_form(parse_thresholds(direction, raw, has_target=True))
    except ThresholdError:
        return raw  # written some other way; compared and exported as it is


# --- kpis ---------------------------------------------------------------------------------------


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
    )
    required = ("key", "name", "team", "owner", "thresholds")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        direction = entry.text("direction", default=Direction.INCREASE, choices=Direction.values)
        target = self._target(entry)
        cadence = entry.duration("cadence", default="1d", positive=True)
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
            "stale_after": entry.duration("stale_after", default=_triple(cadence), positive=True),
            "evaluate_every": entry.duration("evaluate_every", default="1h", positive=True),
            "pending_for": entry.duration("pending_for", default="0m"),
            "keep_for": entry.duration("keep_for", default="0m"),
            "recovery_margin": read_amount(entry, "recovery_margin"),
            "surge": self._surge(entry),
            "forecast": entry.boolean("forecast"),
            "escalation": entry.ref("escalation", ctx, "escalation_policies"),
            "data_source": entry.ref("data_source", ctx, "data_sources"),
        }

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
        return Kpi.objects.for_org(org).select_related("team", "owner__user", "data_source")

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
                **({"window": _format(kpi.aggregate_window)} if kpi.aggregate_window else {}),
            },
            "target": self._stored_target(kpi),
            "thresholds": stored_thresholds(kpi.direction, kpi.thresholds),
            "cadence": _format(kpi.cadence),
            "stale_after": _format(kpi.stale_after),
            "evaluate_every": _format(kpi.evaluate_every),
            "pending_for": _format(kpi.pending_for),
            "keep_for": _format(kpi.keep_for),
            "recovery_margin": stored_amount(kpi.recovery_margin),
            "surge": (
                {"change": stored_amount(kpi.surge_change), "window": _format(kpi.surge_window)}
                if kpi.surge_change or kpi.surge_window
                else None
            ),
            "forecast": kpi.forecast,
            "escalation": kpi.escalation or None,
            "data_source": kpi.data_source.key if kpi.data_source else None,
        }

    def _stored_target(self, kpi: Kpi) -> Any:
        value = num(kpi.target_value) if kpi.target_value is not None else None
        if kpi.target_by is None and kpi.baseline_value is None and kpi.baseline_at is None:
            return value
        target = {"value": value, "by": _iso(kpi.target_by)}
        if kpi.baseline_value is not None or kpi.baseline_at is not None:
            baseline_value = num(kpi.baseline_value) if kpi.baseline_value is not None else None
            target["baseline"] = {"value": baseline_value, "at": _iso(kpi.baseline_at)}
        return target

    def defaults(self, data: dict) -> dict:
        return {
            "unit": "",
            "direction": Direction.INCREASE,
            "aggregate": {"fn": LAST},
            "target": None,
            "cadence": "1d",
            "stale_after": _triple(data["cadence"]),
            "evaluate_every": "1h",
            "pending_for": "0m",
            "keep_for": "0m",
            "recovery_margin": None,
            "surge": None,
            "forecast": False,
            "escalation": None,
            "data_source": None,
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
            "aggregate_window": _duration(data["aggregate"].get("window")),
            "target_value": target.get("value"),
            "target_by": _day(target.get("by")),
            "baseline_value": baseline.get("value"),
            "baseline_at": _day(baseline.get("at")),
            "thresholds": data["thresholds"],
            "cadence": _duration(data["cadence"]),
            "stale_after": _duration(data["stale_after"]),
            "evaluate_every": _duration(data["evaluate_every"]),
            "pending_for": _duration(data["pending_for"]),
            "keep_for": _duration(data["keep_for"]),
            "recovery_margin": "" if data["recovery_margin"] is None else str(data["recovery_margin"]),
            "surge_change": str(surge["change"]) if surge else "",
            "surge_window": _duration(surge.get("window")),
            "forecast": data["forecast"],
            "escalation": data["escalation"] or "",
            "data_source": ctx.get(DataSource, data["data_source"]) if data["data_source"] else None,
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
        ctx.remember(kpi)

    def update(self, change: Change, ctx: Context) -> None:
        kpi, data = change.obj, change.data
        if "owner" in change.changed:
            # The owner is locked: the manifest changes it as an approved, audited transfer.
            ownership_transfer_direct(
                kpi=kpi, to_owner=ctx.membership(data["owner"]), actor=ctx.decider, reason=ctx.reason
            )
        rest = [name for name in change.changed if name != "owner"]
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


# --- objectives and key results -----------------------------------------------------------------


class ObjectivesSection(KeyedSection):
    field, kind, model = "objectives", "objective", Objective
    entry_fields = ("key", "title", "owner", "team", "period", "parent", "key_results")
    required = ("key", "title", "owner", "team", "period")
    key_result_fields = ("key", "title", "kpi", "owner", "start", "target")

    def validate(self, doc: dict, ctx: Context) -> None:
        self.key_result_paths: dict[str, str] = {}
        ctx.parsed["key_results"] = {}
        super().validate(doc, ctx)

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        period = entry.mapping("period", fields=("start", "end"), required=("start", "end"))
        start, end = (period.day("start"), period.day("end")) if period else (None, None)
        if start and end and end < start:
            period.error("end", "the period must not end before it starts")
        data = {
            "key": entry.key(),
            "title": entry.text("title"),
            "owner": entry.member("owner", ctx),
            "team": entry.ref("team", ctx, "teams"),
            "period": {"start": start, "end": end},
            "parent": entry.ref("parent", ctx, "objectives"),
        }
        for i, item in enumerate(entry.items("key_results")):
            self._key_result(item, entry.at(f"key_results[{i}]"), data["key"], ctx)
        return data

    def _key_result(self, item: object, path: str, objective: str | None, ctx: Context) -> None:
        entry = Entry(
            item, path, ctx.errors, fields=self.key_result_fields, required=("key", "title", "start", "target")
        )
        data = {
            "key": entry.key(),
            "title": entry.text("title"),
            "objective": objective,
            "kpi": entry.ref("kpi", ctx, "kpis"),
            "owner": entry.member("owner", ctx),
            "start": entry.number("start"),
            "target": entry.number("target"),
        }
        if not entry.has("kpi") and not entry.has("owner"):
            entry.error("owner", "is required when no kpi is linked (its owner checks values in)")
        if data["start"] is not None and data["start"] == data["target"]:
            entry.error("target", "must differ from start")
        key = data["key"]
        if key in self.key_result_paths:
            entry.error("key", f'duplicate key "{key}" (also {self.key_result_paths[key]})')
        elif key:
            self.key_result_paths[key] = path
            ctx.parsed["key_results"][key] = data

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        stored = self.stored(ctx.org) if ctx.org else []
        parents = {o.key: o.parent.key if o.parent else None for o in stored}
        parents.update({key: data["parent"] for key, data in desired.items()})
        report_parent_cycles(ctx, desired, self.paths, parents)

    def order(self, desired: dict[str, dict]) -> list[str]:
        return parents_first(desired)

    def stored(self, org: Organization) -> Iterable[Objective]:
        return Objective.objects.for_org(org).select_related("owner__user", "team", "parent")

    def canonical(self, objective: Objective) -> dict:
        return {
            "key": objective.key,
            "title": objective.title,
            "owner": objective.owner.user.email.lower(),
            "team": objective.team.key,
            "period": {"start": _iso(objective.period_start), "end": _iso(objective.period_end)},
            "parent": objective.parent.key if objective.parent else None,
        }

    def defaults(self, data: dict) -> dict:
        return {"parent": None}

    def _fields(self, data: dict, ctx: Context) -> dict:
        return {
            "title": data["title"],
            "owner": ctx.membership(data["owner"]),
            "team": ctx.get(Team, data["team"]),
            "period_start": _day(data["period"]["start"]),
            "period_end": _day(data["period"]["end"]),
            "parent": ctx.get(Objective, data["parent"]) if data["parent"] else None,
        }

    def update(self, change: Change, ctx: Context) -> None:
        fields = self._fields(change.data, ctx)
        if "archived" in change.changed:
            fields["archived_at"] = None
        objective_update(objective=change.obj, actor=ctx.actor, **fields)
        if "archived" in change.changed:
            ctx.audit("objective.restored", change.obj)

    def create(self, change: Change, ctx: Context) -> None:
        data = change.data
        objective = objective_create(actor=ctx.actor, organization=ctx.org, key=data["key"], **self._fields(data, ctx))
        ctx.remember(objective)

    def export(self, org: Organization) -> dict:
        exported = super().export(org)
        key_results = KeyResultsSection()
        nested: dict[str, list[dict]] = defaultdict(list)
        for key_result in sorted(key_results.stored(org), key=lambda kr: kr.key):
            if key_result.archived_at is None:
                data = key_results.canonical(key_result)
                nested[data.pop("objective")].append(strip_defaults(data, {"kpi": None, "owner": None}))
        for objective in exported.get(self.field, []):
            if nested.get(objective["key"]):
                objective["key_results"] = nested[objective["key"]]
        return exported


class KeyResultsSection(KeyedSection):
    """Key results are written inside their objective; ObjectivesSection reads them into ctx.parsed."""

    fields = ()
    field, kind, model = "key_results", "key_result", KeyResult

    def collect(self, doc: dict, ctx: Context) -> None:
        pass

    def validate(self, doc: dict, ctx: Context) -> None:
        pass

    def export(self, org: Organization) -> dict:
        return {}

    def stored(self, org: Organization) -> Iterable[KeyResult]:
        return KeyResult.objects.for_org(org).select_related("objective", "kpi", "owner__user")

    def canonical(self, key_result: KeyResult) -> dict:
        return {
            "key": key_result.key,
            "title": key_result.title,
            "objective": key_result.objective.key,
            "kpi": key_result.kpi.key if key_result.kpi else None,
            "owner": key_result.owner.user.email.lower() if key_result.owner else None,
            "start": num(key_result.start),
            "target": num(key_result.target),
        }

    def _fields(self, data: dict, ctx: Context) -> dict:
        return {
            "title": data["title"],
            "kpi": ctx.get(Kpi, data["kpi"]) if data["kpi"] else None,
            "owner": ctx.membership(data["owner"]) if data["owner"] else None,
            "start": data["start"],
            "target": data["target"],
        }

    def assign(self, obj: KeyResult, data: dict, ctx: Context) -> None:
        obj.objective = ctx.get(Objective, data["objective"])
        for name, value in self._fields(data, ctx).items():
            setattr(obj, name, value)

    def create(self, change: Change, ctx: Context) -> None:
        data = change.data
        key_result_create(
            actor=ctx.actor, objective=ctx.get(Objective, data["objective"]), key=data["key"], **self._fields(data, ctx)
        )


# --- scorecards ---------------------------------------------------------------------------------


class ScorecardsSection(KeyedSection):
    field, kind, model = "scorecards", "scorecard", Scorecard
    entry_fields = ("key", "name", "kpis", "teams", "viewers")
    required = ("key", "name")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        return {
            "key": entry.key(),
            "name": entry.text("name"),
            "kpis": sorted(
                entry.strings("kpis", check=lambda k: "" if k in ctx.keys["kpis"] else f'unknown KPI "{k}"')
            ),
            "teams": sorted(entry.strings("teams", check=lambda t: team_problem(t, ctx))),
            "viewers": [canonical_target(v) for v in entry.strings("viewers", check=lambda v: target_problem(v, ctx))],
        }

    def stored(self, org: Organization) -> Iterable[Scorecard]:
        return Scorecard.objects.for_org(org).prefetch_related("kpis", "teams")

    def canonical(self, scorecard: Scorecard) -> dict:
        return {
            "key": scorecard.key,
            "name": scorecard.name,
            # An archived KPI is no longer on any scorecard as far as the manifest is concerned.
            "kpis": sorted(kpi.key for kpi in scorecard.kpis.all() if kpi.archived_at is None),
            "teams": sorted(team.key for team in scorecard.teams.all()),
            "viewers": list(scorecard.viewers),
        }

    def defaults(self, data: dict) -> dict:
        return {"kpis": [], "teams": [], "viewers": []}

    def assign(self, obj: Scorecard, data: dict, ctx: Context) -> None:
        obj.name, obj.viewers = data["name"], data["viewers"]
        obj.key = data["key"]

    def after_save(self, obj: Scorecard, data: dict, ctx: Context) -> None:
        obj.kpis.set([ctx.get(Kpi, key) for key in data["kpis"]])
        obj.teams.set([ctx.get(Team, key) for key in data["teams"]])


# --- data sources -------------------------------------------------------------------------------


class DataSourcesSection(KeyedSection):
    """Each kind's fields, checks and pulls come from its connector (scorecards.connectors.registry)."""

    field, kind, model = "data_sources", "data_source", DataSource
    credential_fields = tuple(config_fields())
    entry_fields = ("key", "kind", *credential_fields, "every", "pulls")
    required = ("key", "kind", "every")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        kind = entry.text("kind", choices=list(CONNECTORS))
        known = connector_kind(kind) if kind else None
        slug = ctx.org.slug if ctx.org else str((ctx.doc.get("organization") or {}).get("slug"))
        names = Names(entry, slug)
        data = {"key": entry.key(), "kind": kind}
        for connector in CONNECTORS.values():
            data.update(connector.read_config(entry, names))
        data["every"] = entry.duration("every", positive=True)
        if known:
            # What each kind reads; a field of another kind is an error at its path.
            for name in known.required:
                if not entry.has(name):
                    entry.error(name, f"is required for kind {kind}")
            for name in self.credential_fields:
                if name not in known.fields and entry.has(name):
                    entry.error(name, f"is not used by kind {kind}")
            known.check_config(entry, data)
        data["pulls"] = self._pulls(entry, ctx, known)
        return data

    def _pulls(self, entry: Entry, ctx: Context, kind: type[Connector] | None) -> list[dict]:
        every_field = pull_fields()
        pulls: list[dict] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(entry.items("pulls")):
            pull = Entry(
                item,
                entry.at(f"pulls[{i}]"),
                ctx.errors,
                fields=every_field,
                required=kind.pull_required if kind else ("kpi",),
                parent=entry,
            )
            if kind:
                for name in every_field:
                    if name not in kind.pull_fields and pull.has(name):
                        pull.error(name, f"is not used by kind {kind.kind}")
            kpi = pull.ref("kpi", ctx, "kpis")
            if kpi in seen:
                pull.error("kpi", f'"{kpi}" is pulled twice (also {seen[kpi]})')
            seen.setdefault(kpi, pull.path)
            values = {"kpi": kpi}
            for connector in CONNECTORS.values():
                values.update(connector.read_pull(pull))
            pulls.append(self._pull_form(kind, values))
        return pulls

    def _pull_form(self, kind: type[Connector] | None, values: dict) -> dict:
        """A pull as the document writes it: its kind's fields, an absent optional one left out."""
        if kind is None:  # an unknown kind, already reported: what the pull gives
            return {name: value for name, value in values.items() if name == "kpi" or value is not None}
        return {
            name: values.get(name)
            for name in kind.pull_fields
            if name in kind.pull_required or values.get(name) is not None
        }

    def stored(self, org: Organization) -> Iterable[DataSource]:
        return DataSource.objects.for_org(org)

    def canonical(self, source: DataSource) -> dict:
        config = source.config or {}
        return {
            "key": source.key,
            "kind": source.kind,
            **{name: _copy(config.get(name) or default) for name, default in config_fields().items()},
            "every": _format(source.every),
            "pulls": [self._pull_form(connector_kind(source.kind), pull) for pull in config.get("pulls", [])],
        }

    def defaults(self, data: dict) -> dict:
        return {**{name: _copy(default) for name, default in config_fields().items()}, "pulls": []}

    def assign(self, obj: DataSource, data: dict, ctx: Context) -> None:
        obj.key, obj.kind, obj.every = data["key"], data["kind"], _duration(data["every"])
        obj.config = {name: data[name] for name in (*self.credential_fields, "pulls") if data[name]}
        # A new or changed source is pulled at the next sweep, without the backoff of its old settings.
        obj.next_run_at, obj.failures = None, 0


def _copy(value: object) -> object:
    """A fresh mapping for a mapping field, so that no two documents share one."""
    return dict(value) if isinstance(value, dict) else value

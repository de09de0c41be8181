"""The `objectives` list, with each objective's key_results written inside it.

Defaults when a field is omitted (the export leaves out the fields equal to them): parent null, key_results [].
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry
from governance.manifest.graph import parents_first, report_parent_cycles
from governance.manifest.sections import KeyedSection, strip_defaults
from governance.models import Organization, Team
from scorecards.manifest.key_results import KeyResultsSection
from scorecards.manifest.values import day_form, day_value
from scorecards.models import Objective
from scorecards.services import objective_create, objective_update


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
            "period": {"start": day_form(objective.period_start), "end": day_form(objective.period_end)},
            "parent": objective.parent.key if objective.parent else None,
        }

    def defaults(self, data: dict) -> dict:
        return {"parent": None}

    def _fields(self, data: dict, ctx: Context) -> dict:
        return {
            "title": data["title"],
            "owner": ctx.membership(data["owner"]),
            "team": ctx.get(Team, data["team"]),
            "period_start": day_value(data["period"]["start"]),
            "period_end": day_value(data["period"]["end"]),
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

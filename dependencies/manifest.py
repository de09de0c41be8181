"""The dependencies part of the organization manifest: edges `from` (upstream) -> `to` (downstream) between KPIs.

An edge is named by its two KPI keys; `kind` is required, `lag` (a duration) and `note` are optional. The graph
stays acyclic: an edge to itself and an edge that closes a cycle (with the edges kept in the database) are
errors that name the cycle. Edges have no archive: under prune the ones missing from the manifest are deleted
(and audited), as are the edges of KPIs a prune archives. The export leaves out edges whose KPIs are archived.

"Computed from" edges (a calculated KPI -> each of its inputs) are not listed here: they follow the KPIs'
formulas (dependencies.formulas), are kept in step after every apply, and count in the cycle check. A declared
edge from a calculated KPI to one of its inputs replaces the computed one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from dependencies.formulas import COMPUTED_FROM, formula_edges_sync, formula_keys
from dependencies.models import Dependency
from governance.durations import format_duration, parse_duration
from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry
from governance.manifest.graph import find_path
from governance.manifest.sections import KeyedSection
from governance.models import Organization
from scorecards.formulas import FormulaError
from scorecards.models import Kpi

DECLARED_KINDS = [kind for kind in Dependency.Kind.values if kind != COMPUTED_FROM]


def edge(upstream: str, downstream: str) -> str:
    return f"{upstream} -> {downstream}"


class DependenciesSection(KeyedSection):
    field, kind, model = "dependencies", "dependency", Dependency
    entry_fields = ("from", "to", "kind", "lag", "note")
    required = ("from", "to", "kind")
    prune_action = "delete"

    def raw_key(self, item: dict) -> str | None:
        return None  # edges are not referred to by other sections

    def data_key(self, data: dict) -> str | None:
        return edge(data["from"], data["to"]) if data["from"] and data["to"] else None

    def key_of(self, obj: Dependency) -> str:
        return edge(obj.upstream.key, obj.downstream.key)

    def duplicate(self, entry: Entry, key: str, other: str) -> None:
        entry.error(None, f"duplicate edge {key} (also {other})")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        upstream, downstream = entry.ref("from", ctx, "kpis"), entry.ref("to", ctx, "kpis")
        if upstream and upstream == downstream:
            entry.error("to", "a KPI cannot depend on itself")
        return {
            "from": upstream,
            "to": downstream,
            "kind": entry.text("kind", choices=DECLARED_KINDS),
            "lag": entry.duration("lag"),
            "note": entry.text("note", default="", max_length=2000, multiline=True),
        }

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        downstream: dict[str, set[str]] = defaultdict(set)
        if ctx.org is not None and not ctx.prune:  # under prune, only the manifest's edges remain
            for obj in self.stored(ctx.org):
                downstream[obj.upstream.key].add(obj.downstream.key)
        edges = {key: (data["from"], data["to"]) for key, data in desired.items()}
        paths = dict(self.paths)
        for key, (path, upstream) in self._formula_edges(ctx).items():
            edges.setdefault(key, upstream)
            paths.setdefault(key, path)
        for upstream, down in edges.values():
            if upstream and down:
                downstream[upstream].add(down)
        reported: set[frozenset] = set()
        for key, (upstream, down) in edges.items():
            if upstream == down:
                continue  # reported as an edge to itself
            back = find_path(down, upstream, lambda k: sorted(downstream.get(k, ())))
            if back is None:
                continue
            cycle = [upstream, *back]
            # Reported once, on the first edge of the document that is part of the cycle.
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                ctx.errors.add(paths[key], f"closes the cycle {' -> '.join(cycle)}")

    def _formula_edges(self, ctx: Context) -> dict[str, tuple[str, tuple[str, str]]]:
        """The edges the formulas will have after this apply, by edge name: (path to blame, (from, to)). The
        document's formulas, and the stored edges of KPIs the document leaves alone (unless pruned)."""
        kpis = ctx.parsed.get("kpis", {})
        raw = ctx.doc.get("kpis") if isinstance(ctx.doc.get("kpis"), list) else []
        paths = {
            item["key"].strip(): f"kpis[{i}]"
            for i, item in enumerate(raw)
            if isinstance(item, dict) and isinstance(item.get("key"), str)
        }
        edges = {}
        for key, data in kpis.items():
            try:
                inputs = formula_keys(data["formula"]) if data.get("formula") else set()
            except FormulaError:
                continue  # reported by the kpis section
            for downstream in sorted(inputs):  # the calculated KPI is upstream of its inputs (dependencies.formulas)
                edges[edge(key, downstream)] = (f"{paths.get(key, 'kpis')}.formula", (key, downstream))
        if ctx.org is not None and not ctx.prune:
            stored = Dependency.objects.for_org(ctx.org).filter(kind=COMPUTED_FROM).exclude(upstream__key__in=kpis)
            for obj in stored.select_related("upstream", "downstream"):
                path = f'kpis: the formula of "{obj.upstream.key}"'
                edges[edge(obj.upstream.key, obj.downstream.key)] = (path, (obj.upstream.key, obj.downstream.key))
        return edges

    def stored(self, org: Organization) -> Iterable[Dependency]:
        declared = Dependency.objects.for_org(org).exclude(kind=COMPUTED_FROM)
        return declared.select_related("upstream", "downstream")

    def is_archived(self, obj: Any) -> bool:
        return False

    def is_exported(self, obj: Dependency) -> bool:
        return obj.upstream.archived_at is None and obj.downstream.archived_at is None

    def canonical(self, obj: Dependency) -> dict:
        return {
            "from": obj.upstream.key,
            "to": obj.downstream.key,
            "kind": obj.kind,
            "lag": format_duration(obj.lag) if obj.lag is not None else None,
            "note": obj.note,
        }

    def defaults(self, data: dict) -> dict:
        return {"lag": None, "note": ""}

    def assign(self, obj: Dependency, data: dict, ctx: Context) -> None:
        obj.upstream, obj.downstream = ctx.get(Kpi, data["from"]), ctx.get(Kpi, data["to"])
        if obj.pk is None:  # a declared edge takes the place of the computed one between the same KPIs
            Dependency.objects.filter(upstream=obj.upstream, downstream=obj.downstream, kind=COMPUTED_FROM).delete()
        obj.kind, obj.note = data["kind"], data["note"]
        obj.lag = parse_duration(data["lag"]) if data["lag"] else None

    def archive(self, change: Change, ctx: Context) -> None:
        obj = change.obj
        ctx.audit("dependency.deleted", obj, before=self.canonical(obj))
        obj.delete()

    def apply(self, plan: list[Change], ctx: Context) -> None:
        super().apply(plan, ctx)
        formula_edges_sync(org=ctx.org, actor=ctx.actor)  # after the KPIs' formulas and the declared edges

    def export(self, org: Organization) -> dict:
        exported = super().export(org)
        if exported:
            exported[self.field].sort(key=lambda item: (item["from"], item["to"]))
        return exported

"""Key results: written inside their objective (objectives.py reads them), planned and applied here.

A key result links a kpi or names an owner (or both); its owner checks values in when no kpi is linked.
"""

from __future__ import annotations

from collections.abc import Iterable

from governance.manifest.context import Change, Context
from governance.manifest.fields import num
from governance.manifest.sections import KeyedSection
from governance.models import Organization
from scorecards.models import KeyResult, Kpi, Objective
from scorecards.services import key_result_create


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

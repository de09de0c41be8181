"""The `scorecards` list.

Defaults when a field is omitted (the export leaves out the fields equal to them): kpis [], teams [], viewers []
(every member sees it).
"""

from __future__ import annotations

from collections.abc import Iterable

from governance.manifest.context import Context
from governance.manifest.fields import Entry
from governance.manifest.sections import KeyedSection
from governance.manifest.targets import canonical_target, target_problem, team_problem
from governance.models import Organization, Team
from scorecards.models import Kpi, Scorecard


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

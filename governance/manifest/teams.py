"""The `teams` list: keys, names, leads, parents and escalation policies."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry
from governance.manifest.graph import parents_first, report_parent_cycles
from governance.manifest.sections import KeyedSection
from governance.models import Organization, Team
from governance.services.teams import team_create, team_update


class TeamsSection(KeyedSection):
    field, kind = "teams", "team"
    entry_fields = ("key", "name", "lead", "parent", "escalation")
    required = ("key", "name")
    prunable = False

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        return {
            "key": entry.key(),
            "name": entry.text("name"),
            "lead": entry.member("lead", ctx),
            "parent": entry.ref("parent", ctx, "teams"),
            "escalation": entry.ref("escalation", ctx, "escalation_policies"),
        }

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        stored = list(self.stored(ctx.org)) if ctx.org else []
        names: dict[str, str] = {}
        for key, data in desired.items():
            if data["name"] is None:
                continue
            if data["name"] in names:
                ctx.errors.add(
                    f"{self.paths[key]}.name", f'duplicate name "{data["name"]}" (also {names[data["name"]]})'
                )
            names.setdefault(data["name"], self.paths[key])
        for team in stored:
            if team.key not in desired and team.name in names:
                ctx.errors.add(f"{names[team.name]}.name", f'the name "{team.name}" is taken by team "{team.key}"')
        parents = {team.key: team.parent.key if team.parent else None for team in stored}
        parents.update({key: data["parent"] for key, data in desired.items()})
        report_parent_cycles(ctx, desired, self.paths, parents)

    def order(self, desired: dict[str, dict]) -> list[str]:
        return parents_first(desired)

    def stored(self, org: Organization) -> Iterable[Team]:
        return Team.objects.for_org(org).select_related("parent", "lead__user")

    def is_archived(self, obj: Any) -> bool:
        return False

    def canonical(self, team: Team) -> dict:
        return {
            "key": team.key,
            "name": team.name,
            "lead": team.lead.user.email.lower() if team.lead else None,
            "parent": team.parent.key if team.parent else None,
            "escalation": team.escalation or None,
        }

    def defaults(self, data: dict) -> dict:
        return {"lead": None, "parent": None, "escalation": None}

    def _relations(self, data: dict, ctx: Context) -> dict:
        return {
            "parent": ctx.get(Team, data["parent"]) if data["parent"] else None,
            "lead": ctx.membership(data["lead"]) if data["lead"] else None,
        }

    def create(self, change: Change, ctx: Context) -> None:
        data = change.data
        team = team_create(
            org=ctx.org,
            actor=ctx.actor,
            key=data["key"],
            name=data["name"],
            escalation=data["escalation"] or "",
            **self._relations(data, ctx),
        )
        ctx.remember(team)

    def update(self, change: Change, ctx: Context) -> None:
        data, team = change.data, ctx.get(Team, change.key)
        team_update(
            team=team,
            actor=ctx.actor,
            name=data["name"],
            escalation=data["escalation"] or "",
            **self._relations(data, ctx),
        )

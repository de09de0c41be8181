"""The `members` list: roles and teams of members, and invitations for the emails that are not members yet."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry
from governance.manifest.sections import KeyedSection, strip_defaults
from governance.manifest.targets import team_problem
from governance.models import Invitation, Membership, Organization, Role, Team
from governance.selectors import active_admins
from governance.services.invitations import invitation_create, invitation_revoke
from governance.services.members import membership_change_role
from governance.services.teams import team_set_members


class MembersSection(KeyedSection):
    field, kind = "members", "member"
    entry_fields = ("email", "name", "role", "teams")
    required = ("email",)
    key_name = "email"
    prunable = False

    def raw_key(self, item: dict) -> str | None:
        key = super().raw_key(item)
        return key.lower() if key else None

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        email = entry.email("email")
        entry.text("name")  # informational; see the module docstring
        if email in ctx.inactive_members:
            entry.error("email", f"{email} is a deactivated member; reactivate them in the app first")
        return {
            "email": email,
            "role": entry.text("role", default=Role.MEMBER, choices=Role.values),
            "teams": sorted(entry.strings("teams", check=lambda t: team_problem(t, ctx))),
        }

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        admins = set(self._admins(ctx))
        after = {email for email in admins if email not in desired}
        after |= {
            email
            for email, data in desired.items()
            if data["role"] == Role.ADMIN and email in admins | ctx.active_members
        }
        if admins and not after:
            demoted = next(email for email in desired if email in admins)
            ctx.errors.add(f"{self.paths[demoted]}.role", f"{demoted} is the last admin; keep an admin in the manifest")

    def _admins(self, ctx: Context) -> list[str]:
        if ctx.org is None:
            return [ctx.admin.email.lower()] if ctx.admin else []
        rows = active_admins(ctx.org)
        return [email.lower() for email in rows.values_list("user__email", flat=True)]

    def stored(self, org: Organization) -> Iterable[Membership]:
        return Membership.objects.for_org(org).filter(is_active=True).select_related("user").prefetch_related("teams")

    def key_of(self, obj: Membership | Invitation) -> str:
        return obj.email.lower() if isinstance(obj, Invitation) else obj.user.email.lower()

    def is_archived(self, obj: Any) -> bool:
        return False

    def invitations(self, org: Organization) -> list[Invitation]:
        pending = Invitation.objects.for_org(org).filter(accepted_at=None, revoked_at=None).prefetch_related("teams")
        return [invitation for invitation in pending if invitation.state == "pending"]

    def canonical(self, obj: Membership | Invitation) -> dict:
        return {
            "email": self.key_of(obj),
            "role": obj.role,
            "teams": sorted(team.key for team in obj.teams.all()),
        }

    def plan(self, doc: dict, ctx: Context) -> list[Change]:
        desired = ctx.parsed.get(self.field, {})
        members = {self.key_of(m): m for m in self.stored(ctx.org)} if ctx.org else {}
        invited = {self.key_of(i): i for i in self.invitations(ctx.org)} if ctx.org else {}
        led = self._led_teams(ctx)
        if ctx.org is None and ctx.admin is not None:
            members[ctx.admin.email.lower()] = None  # organization_create makes them its admin
        changes = []
        for email, data in desired.items():
            data = {**data, "teams": sorted(set(data["teams"]) | led.get(email, set()))}
            if email in members:
                obj, note = members[email], ""
                before = self.canonical(obj) if obj else {"email": email, "role": Role.ADMIN, "teams": []}
            elif email in invited:
                obj, note = invited[email], "invitation"
                before = self.canonical(obj)
            else:
                changes.append(Change("create", self.kind, email, note="invitation", data=data, section=self))
                continue
            fields = [(name, before[name], value) for name, value in data.items() if before[name] != value]
            if fields:
                changes.append(Change("update", self.kind, email, fields, note=note, data=data, obj=obj, section=self))
        if ctx.prune:
            changes += [self.prune(email, m) for email, m in members.items() if m and email not in desired]
        # Promotions first: demoting an admin needs another admin already in place.
        return sorted(changes, key=lambda c: c.data is None or c.data["role"] != Role.ADMIN)

    def _led_teams(self, ctx: Context) -> dict[str, set[str]]:
        """Who leads which team once applied: a lead always belongs to their team."""
        leads: dict[str, str | None] = {}
        if ctx.org is not None:
            stored = Team.objects.for_org(ctx.org).filter(lead__isnull=False).select_related("lead__user")
            leads = {team.key: team.lead.user.email.lower() for team in stored}
        leads.update({key: data["lead"] for key, data in ctx.parsed.get("teams", {}).items()})
        led: dict[str, set[str]] = defaultdict(set)
        for key, email in leads.items():
            if email:
                led[email].add(key)
        return led

    def apply(self, plan: list[Change], ctx: Context) -> None:
        joins: dict[str, set[Membership]] = defaultdict(set)
        leaves: dict[str, set[Membership]] = defaultdict(set)
        for change in plan:
            data = change.data
            if change.action == "skip":
                continue
            if change.note == "invitation":
                if change.obj is not None:
                    invitation_revoke(invitation=change.obj, actor=ctx.actor)
                teams = [ctx.get(Team, key) for key in data["teams"]]
                invitation_create(org=ctx.org, actor=ctx.actor, email=data["email"], role=data["role"], teams=teams)
                continue
            membership = ctx.membership(change.key)
            if "role" in change.changed:
                membership_change_role(membership=membership, actor=ctx.actor, role=data["role"])
            if "teams" in change.changed:
                before = dict((n, b) for n, b, _ in change.fields)["teams"]
                for key in set(data["teams"]) - set(before):
                    joins[key].add(membership)
                for key in set(before) - set(data["teams"]):
                    leaves[key].add(membership)
        for key in sorted(set(joins) | set(leaves)):
            team = ctx.get(Team, key)
            members = (set(team.memberships.all()) - leaves[key]) | joins[key]
            team_set_members(team=team, actor=ctx.actor, members=members)

    def export(self, org: Organization) -> dict:
        items = []
        for obj in sorted([*self.stored(org), *self.invitations(org)], key=self.key_of):
            data = self.canonical(obj)
            name = obj.user.name if isinstance(obj, Membership) else ""
            data = {"email": data["email"], **({"name": name} if name else {}), **data}
            items.append(strip_defaults(data, {"role": Role.MEMBER, "teams": []}))
        return {"members": items} if items else {}

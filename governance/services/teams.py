"""Teams: creating, changing and staffing them; the lead holds the right to manage the team."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from governance.models import (
    Membership,
    Organization,
    Team,
    User,
)
from governance.services.audit import audit_log, snapshot

TEAM_FIELDS = ["key", "name", "parent", "lead", "escalation"]


def _check_team(team: Team) -> None:
    if team.parent_id and team.parent.organization_id != team.organization_id:
        raise ValidationError({"parent": "Pick a team of this organization."})
    if team.lead_id and (team.lead.organization_id != team.organization_id or not team.lead.is_active):
        raise ValidationError({"lead": "The lead must be an active member of this organization."})
    if team.pk and team.parent_id and team.pk in [team.parent_id, *(t.pk for t in team.parent.ancestors())]:
        raise ValidationError({"parent": f'"{team.parent}" sits inside "{team}"; a team cannot nest in itself.'})
    team.full_clean()


def _sync_lead_permission(team: Team, old_lead: Membership | None) -> None:
    # The lead manages the team (members, name); the right moves with the role.
    if old_lead and old_lead != team.lead:
        remove_perm("governance.manage_team", old_lead.user, team)
    if team.lead:
        assign_perm("governance.manage_team", team.lead.user, team)


@transaction.atomic
def team_create(
    *,
    org: Organization,
    actor: User,
    key: str,
    name: str,
    parent: Team | None = None,
    lead: Membership | None = None,
    escalation: str = "",
) -> Team:
    team = Team(organization=org, key=key, name=name, parent=parent, lead=lead, escalation=escalation)
    _check_team(team)
    team.save()
    _sync_lead_permission(team, None)
    if lead:
        lead.teams.add(team)
    audit_log(org=org, actor=actor, verb="team.created", obj=team, after=snapshot(team, TEAM_FIELDS))
    return team


@transaction.atomic
def team_update(*, team: Team, actor: User, **fields) -> Team:
    stored = Team.objects.select_for_update(of=("self",)).select_related("parent", "lead__user").get(pk=team.pk)
    before = snapshot(stored, TEAM_FIELDS)  # from the database, as in organization_update
    old_lead = stored.lead
    for name, value in fields.items():
        setattr(team, name, value)
    _check_team(team)
    team.save()
    _sync_lead_permission(team, old_lead)
    if team.lead:
        team.lead.teams.add(team)
    after = snapshot(team, TEAM_FIELDS)
    if after != before:
        audit_log(org=team.organization, actor=actor, verb="team.updated", obj=team, before=before, after=after)
    return team


@transaction.atomic
def team_set_members(*, team: Team, actor: User, members: Iterable[Membership]) -> Team:
    members = list(members)
    if any(m.organization_id != team.organization_id for m in members):
        raise ValidationError({"members": "Pick members of this organization."})
    before = sorted(m.user.email for m in team.memberships.select_related("user"))
    team.memberships.set(members)
    if team.lead and team.lead not in members:
        team.memberships.add(team.lead)  # the lead always belongs to the team they lead
    after = sorted(m.user.email for m in team.memberships.select_related("user"))
    if after != before:
        audit_log(
            org=team.organization,
            actor=actor,
            verb="team.members_changed",
            obj=team,
            before={"members": before},
            after={"members": after},
        )
    return team

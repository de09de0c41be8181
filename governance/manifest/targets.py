"""Whom a document may name: members by email, teams by key, and escalation targets and viewers of every kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from governance.manifest.context import Context
from governance.models import Organization, Role, Team


def member_problem(email: str, ctx: Context) -> str:
    if email in ctx.active_members:
        return ""
    if email in ctx.inactive_members:
        return f"{email} is a deactivated member; name an active member"
    if email in ctx.invited:
        return f"{email} is invited but has not accepted yet (invitation pending); only active members can be named"
    return f'unknown member "{email}"'


def target_problem(target: str, ctx: Context, plain: Sequence[str] = ()) -> str:
    """Escalation targets and scorecard viewers: the `plain` words, role:<role>, team:<key>, user:<email>."""
    if target in plain:
        return ""
    kind, _, value = target.partition(":")
    if kind == "role":
        return "" if value in Role.values else f'unknown role "{value}"; use {", ".join(Role.values)}'
    if kind == "team":
        return "" if value in ctx.keys["teams"] else f'unknown team "{value}"'
    if kind == "user":
        if value.lower() in ctx.inactive_members:
            return f"{value} is a deactivated member"
        return "" if value.lower() in ctx.members else f'unknown member "{value}"'
    forms = ", ".join([*plain, '"role:<role>"', '"team:<key>"', '"user:<email>"'])
    return f'"{target}" is not one of {forms}'


def canonical_target(target: str) -> str:
    kind, _, value = target.partition(":")
    return f"user:{value.lower()}" if kind == "user" else target


def team_problem(key: str, ctx: Context) -> str:
    return "" if key in ctx.keys["teams"] else f'unknown team "{key}"'


def target_checker(org: Organization, *, plain: Sequence[str] = ()) -> Callable[[str], str]:
    """Checks targets the way a manifest does, against the organization as stored: for a form of the app, where
    no document is applied. The returned function gives a target's problem, or "" when there is none."""
    ctx = Context(org=org, doc={})
    ctx.keys["teams"] = set(Team.objects.for_org(org).values_list("key", flat=True))
    ctx.load_people()
    return lambda target: target_problem(target, ctx, plain)

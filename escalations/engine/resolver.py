"""Who an escalation step reaches: the policy a KPI follows and the people its targets name (four eyes
included)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from escalations.engine.timing import Level, Policy
from escalations.models import (
    EscalationPolicy,
)
from governance.models import Membership, Role
from scorecards.models import Kpi


def policy_for(kpi: Kpi) -> tuple[str, Policy]:
    """The KPI's policy (its own, else its team's, else the organization's default) as a snapshot."""
    key = kpi.escalation or kpi.team.escalation or kpi.organization.default_escalation
    stored = (
        EscalationPolicy.objects.filter(organization_id=kpi.organization_id, key=key, archived_at=None)
        .prefetch_related("levels")
        .first()
        if key
        else None
    )
    if stored is None:  # nobody to escalate to: the owner's task alone, due after the default time
        return "", Policy(settings.DEFAULT_MITIGATION_DUE, timedelta(hours=4), 0, ())
    levels = tuple(Level(tuple(lv.targets), lv.wait, lv.business_hours) for lv in stored.levels.all())
    return stored.key, Policy(stored.mitigation_due, stored.ack_timeout, stored.repeat, levels)


def policies_for(kpis: Iterable[Kpi]) -> dict[int, tuple[str, Policy]]:
    """policy_for of many KPIs (their team and organization loaded) in two queries, whatever their number."""
    kpis = list(kpis)
    keys = {k.pk: k.escalation or k.team.escalation or k.organization.default_escalation for k in kpis}
    stored = {
        (p.organization_id, p.key): (
            p.key,
            Policy(
                p.mitigation_due,
                p.ack_timeout,
                p.repeat,
                tuple(Level(tuple(lv.targets), lv.wait, lv.business_hours) for lv in p.levels.all()),
            ),
        )
        for p in EscalationPolicy.objects.filter(
            organization_id__in={k.organization_id for k in kpis}, key__in=set(keys.values()) - {""}, archived_at=None
        ).prefetch_related("levels")
    }
    default = "", Policy(settings.DEFAULT_MITIGATION_DUE, timedelta(hours=4), 0, ())
    return {k.pk: stored.get((k.organization_id, keys[k.pk]), default) for k in kpis}


ROLE_WORDS = {"admin": "admins", "executive": "executives", "member": "members"}


def target_words(name: str) -> str:
    """A level's target as a timeline says it, without a query: "team lead", "executives", "team ops"."""
    if name in ("owner", "team_lead"):
        return {"owner": "KPI owner", "team_lead": "team lead"}[name]
    kind, _, value = name.partition(":")
    return ROLE_WORDS.get(value, value) if kind == "role" else f"{kind} {value}" if kind == "team" else value


def and_names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Resolved:
    """Who a level notifies in one episode; `left_out` names the people it named who decide nothing here (four
    eyes: the KPI's owner, the path's filer), each with the reason."""

    people: list[Membership]
    left_out: list[tuple[str, str]]  # (name, reason)
    fallback: bool = False  # the policy left nobody: the organization's executives, else its admins

    def skip_reason(self) -> str:
        if not self.left_out:
            return "names nobody active"
        reasons: dict[str, list[str]] = {}
        for name, why in self.left_out:
            reasons.setdefault(why, []).append(name)
        return "; ".join(f"{and_names(names)} {why}" for why, names in reasons.items())


class Resolver:
    """Level targets (owner, team_lead, role:, team:, user:) to the active members they name today. Named groups
    are read once per organization and resolver, so a sweep's batch resolves them with a query or two.

    Four eyes (SEMANTICS.md section 3): `exclude` maps the user ids who decide nothing in an episode (its KPI's
    owner, its paths' filers; a dependency review's downstream owner) to the reason; they are never escalation
    targets. A level naming only them is empty; a policy whose every level is empty falls back to the
    organization's executives, else its admins (never the excluded), at its first level."""

    def __init__(self) -> None:
        self._groups: dict[tuple[int, str], list[Membership]] = {}

    def __call__(self, names: tuple[str, ...], kpi: Kpi, exclude: Mapping[int, str] | None = None) -> list[Membership]:
        return self.level(names, kpi, exclude or {}).people

    def level(self, names: tuple[str, ...], kpi: Kpi, exclude: Mapping[int, str]) -> Resolved:
        people: dict[int, Membership] = {}
        for name in names:
            if name == "owner":
                found = [kpi.owner]
            elif name == "team_lead":
                found = [kpi.team.lead] if kpi.team.lead_id else []
            else:
                found = self._group(kpi.organization_id, name)
            people |= {m.pk: m for m in found if m.is_active}
        kept = [people[pk] for pk in sorted(people) if people[pk].user_id not in exclude]
        if kept or not people:
            return Resolved(kept, [])
        return Resolved([], [(people[pk].user.name, exclude[people[pk].user_id]) for pk in sorted(people)])

    def step(self, policy: Policy, level: int, kpi: Kpi, exclude: Mapping[int, str]) -> Resolved:
        """Who `level` of `policy` notifies in this episode, the fallback included."""
        found = self.level(policy.levels[level - 1].targets, kpi, exclude)
        if found.people or level != 1 or any(self.level(lv.targets, kpi, exclude).people for lv in policy.levels[1:]):
            return found
        for role in ("executive", "admin"):
            people = [m for m in self._group(kpi.organization_id, f"role:{role}") if m.user_id not in exclude]
            if people:
                return Resolved(people, found.left_out, fallback=True)
        return found

    def _group(self, org_id: int, name: str) -> list[Membership]:
        if (org_id, name) not in self._groups:
            kind, _, value = name.partition(":")
            wanted = {"role": Q(role=value), "team": Q(teams__key=value), "user": Q(user__email__iexact=value)}
            members = Membership.objects.filter(organization_id=org_id, is_active=True).select_related("user")
            self._groups[(org_id, name)] = (
                list(members.filter(wanted[kind]).distinct())
                if kind in wanted and (kind != "role" or value in Role.values)
                else []
            )
        return self._groups[(org_id, name)]


def four_eyes(kpi: Kpi, filers: Iterable[tuple[int, str]] = ()) -> dict[int, str]:
    """The user ids who are never escalation targets of an episode of `kpi`, with the reason: its owner, and the
    filers (user id, name) of its mitigation paths."""
    excluded = {filer: "filed the mitigation path" for filer, _ in filers}
    excluded[kpi.owner.user_id] = "owns this KPI"
    return excluded


def admins(org_id: int) -> list[Membership]:
    return list(
        Membership.objects.filter(organization_id=org_id, role=Role.ADMIN, is_active=True).select_related("user")
    )

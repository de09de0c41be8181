"""Escalation policies (the admin pages). A policy's levels are replaced as a whole on every edit: running
workstreams follow the snapshot taken when they opened (Workstream.policy), so no row outside the policy refers to a
level."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from escalations.models import (
    EscalationLevel,
    EscalationPolicy,
)
from governance.durations import format_duration
from governance.manifest.targets import canonical_target, target_checker
from governance.models import Organization, Team, User, key_validator
from governance.services.audit import audit_log, snapshot
from scorecards.models import Kpi


@dataclass(frozen=True)
class LevelDraft:
    targets: tuple[str, ...]
    wait: timedelta
    business_hours: bool = False


def policy_snapshot(policy: EscalationPolicy) -> dict:
    """The audit view of a policy, levels included, in the manifest's spelling."""
    return {
        **snapshot(policy, ["key", "name", "mitigation_due", "ack_timeout", "repeat", "archived_at"]),
        "levels": [
            {"notify": list(lv.targets), "wait": format_duration(lv.wait), "business_hours": lv.business_hours}
            for lv in sorted(policy.levels.all(), key=lambda lv: lv.position)
        ],
    }


def _check_policy(
    org: Organization, *, name: str, mitigation_due: timedelta, ack_timeout: timedelta, repeat: int, levels
) -> list[LevelDraft]:
    """The rules of MANIFEST.md's escalation_policies; returns the levels with canonical targets."""
    errors: dict[str, list[str]] = {}
    if not name.strip():
        errors["name"] = ["Give the policy a name."]
    if mitigation_due <= timedelta(0):
        errors["mitigation_due"] = ["The owner needs some time to file a mitigation path: give a positive duration."]
    if ack_timeout <= timedelta(0):
        errors["ack_timeout"] = ["An acknowledgement must pause escalation for a positive duration."]
    if not 0 <= repeat <= 9:
        errors["repeat"] = ["Repeat from 0 to 9 times."]
    if not levels:
        errors["levels"] = ["Add at least one level: without one, nobody hears about a breach but its owner."]
    problem_of, checked = target_checker(org, plain=("owner", "team_lead")), []
    for i, level in enumerate(levels, start=1):
        if not level.targets:
            errors.setdefault("levels", []).append(f"Level {i}: pick at least one target.")
        for target in level.targets:
            problem = problem_of(target)
            if problem:
                errors.setdefault("levels", []).append(f"Level {i}: {problem}.")
        if level.wait <= timedelta(0):
            errors.setdefault("levels", []).append(f"Level {i}: the wait must be longer than zero.")
        targets = tuple(dict.fromkeys(canonical_target(t) for t in level.targets))  # in order, once each
        checked.append(LevelDraft(targets, level.wait, level.business_hours))
    if errors:
        raise ValidationError(errors)
    return checked


def _save_levels(policy: EscalationPolicy, levels: list[LevelDraft]) -> None:
    policy.levels.all().delete()
    EscalationLevel.objects.bulk_create(
        EscalationLevel(
            organization_id=policy.organization_id,
            policy=policy,
            position=position,
            targets=list(level.targets),
            wait=level.wait,
            business_hours=level.business_hours,
        )
        for position, level in enumerate(levels, start=1)
    )


@transaction.atomic
def policy_create(
    *,
    org: Organization,
    actor: User,
    key: str,
    name: str,
    mitigation_due: timedelta,
    ack_timeout: timedelta,
    repeat: int,
    levels: list[LevelDraft],
) -> EscalationPolicy:
    checked, errors = None, {}
    try:
        checked = _check_policy(
            org, name=name, mitigation_due=mitigation_due, ack_timeout=ack_timeout, repeat=repeat, levels=levels
        )
    except ValidationError as e:
        errors = e.message_dict
    try:
        key_validator(key)
    except ValidationError as e:
        errors["key"] = e.messages
    else:
        taken = EscalationPolicy.objects.for_org(org).filter(key=key).first()
        if taken is not None:
            archived = " (archived)" if taken.archived_at else ""
            errors["key"] = [f'The key "{key}" belongs to the policy "{taken.name}"{archived}; pick another.']
    if errors:
        raise ValidationError(errors)
    policy = EscalationPolicy.objects.create(
        organization=org,
        key=key,
        name=name.strip(),
        mitigation_due=mitigation_due,
        ack_timeout=ack_timeout,
        repeat=repeat,
    )
    _save_levels(policy, checked)
    audit_log(org=org, actor=actor, verb="escalation_policy.created", obj=policy, after=policy_snapshot(policy))
    return policy


@transaction.atomic
def policy_update(
    *,
    policy: EscalationPolicy,
    actor: User,
    name: str,
    mitigation_due: timedelta,
    ack_timeout: timedelta,
    repeat: int,
    levels: list[LevelDraft],
) -> EscalationPolicy:
    """Changes apply to episodes opened from now on; running ones keep the snapshot they opened with."""
    policy = EscalationPolicy.objects.select_for_update().select_related("organization").get(pk=policy.pk)
    if policy.archived_at:
        raise ValidationError("This policy is archived; archived policies are kept as they were.")
    checked = _check_policy(
        policy.organization,
        name=name,
        mitigation_due=mitigation_due,
        ack_timeout=ack_timeout,
        repeat=repeat,
        levels=levels,
    )
    before = policy_snapshot(policy)
    policy.name, policy.repeat = name.strip(), repeat
    policy.mitigation_due, policy.ack_timeout = mitigation_due, ack_timeout
    policy.save(update_fields=["name", "mitigation_due", "ack_timeout", "repeat"])
    _save_levels(policy, checked)
    after = policy_snapshot(policy)
    if after != before:
        audit_log(
            org=policy.organization,
            actor=actor,
            verb="escalation_policy.updated",
            obj=policy,
            before=before,
            after=after,
        )
    return policy


def policy_uses(policy: EscalationPolicy) -> list[str]:
    """Where the policy is named, in words: the organization's default, teams' defaults, KPIs' own choice."""
    org = Organization.objects.get(pk=policy.organization_id)
    uses = ["the organization's default"] if org.default_escalation == policy.key else []
    teams = list(Team.objects.for_org(org).filter(escalation=policy.key).values_list("name", flat=True))
    if teams:
        uses.append(f"the default of team{'s' if len(teams) > 1 else ''} {', '.join(teams)}")
    kpis = list(Kpi.objects.for_org(org).filter(escalation=policy.key, archived_at=None).values_list("name", flat=True))
    if kpis:
        shown = ", ".join(kpis[:5]) + (f" and {len(kpis) - 5} more" if len(kpis) > 5 else "")
        uses.append(f"the policy of KPI{'s' if len(kpis) > 1 else ''} {shown}")
    return uses


@transaction.atomic
def policy_archive(*, policy: EscalationPolicy, actor: User) -> EscalationPolicy:
    """Archived, never deleted: the audit log and past workstreams name it. Refused while anything uses it."""
    policy = EscalationPolicy.objects.select_for_update().select_related("organization").get(pk=policy.pk)
    if policy.archived_at:
        raise ValidationError("This policy is archived already.")
    uses = policy_uses(policy)
    if uses:
        raise ValidationError(
            f'"{policy.name}" is {"; ".join(uses)}. Choose another policy there first, then archive it.'
        )
    before = policy_snapshot(policy)
    policy.archived_at = timezone.now()
    policy.save(update_fields=["archived_at"])
    audit_log(
        org=policy.organization,
        actor=actor,
        verb="escalation_policy.archived",
        obj=policy,
        before=before,
        after=policy_snapshot(policy),
    )
    return policy


@transaction.atomic
def policy_assign_defaults(
    *,
    org: Organization,
    actor: User,
    default: EscalationPolicy | None,
    teams: Mapping[Team, EscalationPolicy | None],
) -> None:
    """The organization's default policy and each team's (None: the team follows the organization's)."""
    chosen = [default, *teams.values()]
    for policy in chosen:
        if policy is not None and (policy.organization_id != org.pk or policy.archived_at):
            raise ValidationError(f'"{policy}" is not an active policy of this organization.')
    if any(team.organization_id != org.pk for team in teams):
        raise ValidationError("Pick teams of this organization.")
    stored_org = Organization.objects.select_for_update().get(pk=org.pk)
    stored_teams = {t.pk: t for t in Team.objects.for_org(org).select_for_update().filter(pk__in=[t.pk for t in teams])}
    before = {
        "organization": stored_org.default_escalation,
        "teams": {t.key: t.escalation for t in stored_teams.values()},
    }
    after = {
        "organization": default.key if default else "",
        "teams": {stored_teams[t.pk].key: (p.key if p else "") for t, p in teams.items()},
    }
    if after == before:
        return
    Organization.objects.filter(pk=org.pk).update(default_escalation=after["organization"])
    org.default_escalation = after["organization"]
    for team, policy in teams.items():
        Team.objects.filter(pk=team.pk).update(escalation=policy.key if policy else "")
        team.escalation = policy.key if policy else ""
    audit_log(
        org=org,
        actor=actor,
        verb="escalation_policy.defaults_assigned",
        obj=org,
        before=before,
        after=after,
    )

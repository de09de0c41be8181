"""Reads of the escalation policy pages: policies in words, where each is used, and the preview timeline."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count

from escalations.engine.resolver import Resolver, admins, four_eyes, policy_for
from escalations.engine.timing import Level, Policy, plan
from escalations.models import EscalationPolicy
from governance import formats
from governance.durations import format_duration
from governance.hours import business_hours
from governance.models import Membership, Organization, Role, Team
from scorecards.models import Kpi

PLAIN = {"owner": "KPI owner", "team_lead": "Team lead"}
ROLES = {Role.ADMIN: "Admins", Role.EXECUTIVE: "Executives", Role.MEMBER: "Members"}


def target_labels(org: Organization) -> dict[str, str]:
    """Each target a level may name, in words: "Team lead", "Executives", "Team Marketing", "Omar Okafor"."""
    labels = {**PLAIN, **{f"role:{role}": words for role, words in ROLES.items()}}
    labels |= {f"team:{key}": f"Team {name}" for key, name in Team.objects.for_org(org).values_list("key", "name")}
    for email, name, active in Membership.objects.for_org(org).values_list("user__email", "user__name", "is_active"):
        labels[f"user:{email.lower()}"] = (name or email) + ("" if active else " (deactivated)")
    return labels


def describe(names: tuple[str, ...] | list[str], labels: dict[str, str]) -> str:
    return ", ".join(labels.get(name, name) for name in names) or "nobody"


@dataclass
class LevelWords:
    position: int
    targets: str
    wait: str
    business_hours: bool


@dataclass
class PolicyCard:
    policy: EscalationPolicy
    levels: list[LevelWords]
    org_default: bool = False
    teams: list[str] = field(default_factory=list)  # teams naming it as their default
    kpis: int = 0  # KPIs naming it as their own policy

    @property
    def mitigation_due(self) -> str:
        return format_duration(self.policy.mitigation_due)

    @property
    def ack_timeout(self) -> str:
        return format_duration(self.policy.ack_timeout)


def policy_cards(*, org: Organization) -> tuple[list[PolicyCard], list[PolicyCard]]:
    """Active and archived policies with their levels in words and their uses, in a constant number of queries."""
    labels = target_labels(org)
    team_uses: dict[str, list[str]] = defaultdict(list)
    named = Team.objects.for_org(org).exclude(escalation="").order_by("name")
    for name, key in named.values_list("name", "escalation"):
        team_uses[key].append(name)
    kpi_uses = dict(
        Kpi.objects.for_org(org)
        .filter(archived_at=None)
        .exclude(escalation="")
        .values_list("escalation")
        .annotate(n=Count("id"))
        .values_list("escalation", "n")
    )
    active, archived = [], []
    for policy in EscalationPolicy.objects.for_org(org).prefetch_related("levels").order_by("name"):
        levels = [
            LevelWords(lv.position, describe(lv.targets, labels), format_duration(lv.wait), lv.business_hours)
            for lv in sorted(policy.levels.all(), key=lambda lv: lv.position)
        ]
        card = PolicyCard(
            policy,
            levels,
            org_default=org.default_escalation == policy.key,
            teams=team_uses.get(policy.key, []),
            kpis=kpi_uses.get(policy.key, 0),
        )
        (archived if policy.archived_at else active).append(card)
    return active, archived


# --- the preview: "if an episode opened now" -------------------------------------------------------


@dataclass
class PreviewRow:
    at: datetime
    kind: str  # owner | notify | skipped | exhausted
    title: str
    targets: str = ""
    people: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class Preview:
    kpi: Kpi
    policy_label: str
    opened: datetime
    rows: list[PreviewRow]
    levels: int
    mitigation_due: timedelta

    @property
    def timezone(self) -> str:
        return self.kpi.organization.timezone


def effective_policy(kpi: Kpi) -> tuple[str, Policy]:
    """The policy an episode of `kpi` would snapshot now, and its name in words."""
    key, policy = policy_for(kpi)
    if not key:
        return "no policy applies (only the owner's task)", policy
    name = EscalationPolicy.objects.filter(organization_id=kpi.organization_id, key=key).values_list("name", flat=True)
    source = "its own" if kpi.escalation == key else "its team's" if kpi.team.escalation == key else "the default"
    return f"{name.first()} ({source})", policy


def stored_policy(policy: EscalationPolicy) -> Policy:
    levels = tuple(
        Level(tuple(lv.targets), lv.wait, lv.business_hours)
        for lv in sorted(policy.levels.all(), key=lambda lv: lv.position)
    )
    return Policy(policy.mitigation_due, policy.ack_timeout, policy.repeat, levels)


def preview(*, kpi: Kpi, policy: Policy, policy_label: str, opened: datetime) -> Preview:
    """Who would hear about a breach of `kpi` opened at `opened`, and when, if no path were ever approved.

    Targets resolve to today's active members but the KPI's owner (four eyes; one query per level), the steps come
    from timing.plan with the organization's business hours, so the preview follows the sweep's rules, skipped empty
    levels and the fallback to executives or admins included."""
    org = kpi.organization
    labels = target_labels(org)
    resolve, exclude = Resolver(), four_eyes(kpi)
    found = [resolve.step(policy, level, kpi, exclude) for level in range(1, len(policy.levels) + 1)]
    empty = frozenset(i for i, level in enumerate(found, start=1) if not level.people)
    due = opened + policy.mitigation_due
    rows = [
        PreviewRow(
            opened,
            "owner",
            "The episode opens",
            "KPI owner",
            [kpi.owner.user.name],
            f"Mitigation task due {formats.when(due, org.tzinfo)}"
            + ("; escalation starts then if no path is approved." if policy.levels else "; there is no escalation."),
        )
    ]
    for step in plan(policy, opened, business_hours(org), empty):
        if step.exhausted:
            rows.append(
                PreviewRow(
                    step.at,
                    "exhausted",
                    "Escalation exhausted",
                    "the organization's admins",
                    [m.user.name for m in admins(org.pk)],
                    "Escalation stops here; the admins decide what happens next.",
                )
            )
            continue
        level = policy.levels[step.level - 1]
        title = f"Level {step.level}" + (f", pass {step.pass_}" if policy.repeat else "")
        late = ""
        if step.at != step.due:
            late = f"Due {formats.when(step.due, org.tzinfo)}, outside business hours: waits for the opening. "
        level_found = found[step.level - 1]
        if step.skipped:
            why = level_found.skip_reason() if level_found.left_out else "Names nobody active today"
            note = f"{why}: skipped, and the next step is due at once."
            rows.append(PreviewRow(step.at, "skipped", title, describe(level.targets, labels), [], late + note))
        else:
            wait = format_duration(level.wait) + (" of business hours" if level.business_hours else "")
            instead = ""
            if level_found.fallback:
                who = "executives" if level_found.people[0].role == Role.EXECUTIVE else "admins"
                why = level_found.skip_reason() if level_found.left_out else "names nobody active"
                instead = f"The policy leaves nobody else ({why}): the organization's {who} get it. "
            rows.append(
                PreviewRow(
                    step.at,
                    "notify",
                    title,
                    describe(level.targets, labels),
                    [m.user.name for m in level_found.people],
                    f"{late}{instead}Escalation task; the next step waits {wait}.",
                )
            )
    return Preview(kpi, policy_label, opened, rows, len(policy.levels), policy.mitigation_due)

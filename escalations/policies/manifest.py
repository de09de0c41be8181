"""The escalation_policies part of the organization manifest.

A policy needs name, mitigation_due, ack_timeout and at least one level; `repeat` (0..9) defaults to 0. A level
needs `notify` (one or more targets: owner | team_lead | "role:<admin|executive|member>" | "team:<key>" |
"user:<email>") and `wait`; `business_hours` defaults to false. Levels are matched by position: a changed
policy updates its level rows in place, adds the new ones and deletes the ones past its new end (workstreams
follow a snapshot of the policy taken when they open, so this never changes a running episode).
"""

from __future__ import annotations

from collections.abc import Iterable

from escalations.models import EscalationLevel, EscalationPolicy
from governance.durations import format_duration, parse_duration
from governance.manifest.context import Context
from governance.manifest.fields import Entry
from governance.manifest.sections import KeyedSection, strip_defaults
from governance.manifest.targets import canonical_target, target_problem
from governance.models import Organization

TARGET_WORDS = ("owner", "team_lead")


class EscalationPoliciesSection(KeyedSection):
    field, kind, model = "escalation_policies", "escalation_policy", EscalationPolicy
    entry_fields = ("key", "name", "mitigation_due", "ack_timeout", "repeat", "levels")
    required = ("key", "name", "mitigation_due", "ack_timeout", "levels")
    level_fields = ("notify", "wait", "business_hours")

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        levels = [self._level(entry, i, item, ctx) for i, item in enumerate(entry.items("levels"))]
        if entry.has("levels") and not levels and not entry.failed:
            entry.error("levels", "must have at least one level")
        return {
            "key": entry.key(),
            "name": entry.text("name"),
            "mitigation_due": entry.duration("mitigation_due"),
            "ack_timeout": entry.duration("ack_timeout"),
            "repeat": entry.integer("repeat", default=0, low=0, high=9),
            "levels": levels,
        }

    def _level(self, policy: Entry, i: int, item: object, ctx: Context) -> dict:
        level = Entry(
            item,
            policy.at(f"levels[{i}]"),
            ctx.errors,
            fields=self.level_fields,
            required=("notify", "wait"),
            parent=policy,
        )
        notify = level.strings("notify", check=lambda t: target_problem(t, ctx, TARGET_WORDS))
        if level.has("notify") and not notify and not level.failed:
            level.error("notify", "must name at least one target")
        return {
            "notify": [canonical_target(target) for target in notify],
            "wait": level.duration("wait"),
            "business_hours": level.boolean("business_hours"),
        }

    def stored(self, org: Organization) -> Iterable[EscalationPolicy]:
        return EscalationPolicy.objects.for_org(org).prefetch_related("levels")

    def canonical(self, policy: EscalationPolicy) -> dict:
        return {
            "key": policy.key,
            "name": policy.name,
            "mitigation_due": format_duration(policy.mitigation_due),
            "ack_timeout": format_duration(policy.ack_timeout),
            "repeat": policy.repeat,
            "levels": [
                {
                    "notify": list(level.targets),
                    "wait": format_duration(level.wait),
                    "business_hours": level.business_hours,
                }
                for level in sorted(policy.levels.all(), key=lambda level: level.position)
            ],
        }

    def defaults(self, data: dict) -> dict:
        return {"repeat": 0}

    def export(self, org: Organization) -> dict:
        exported = super().export(org)
        for policy in exported.get(self.field, []):
            policy["levels"] = [strip_defaults(level, {"business_hours": False}) for level in policy["levels"]]
        return exported

    def assign(self, obj: EscalationPolicy, data: dict, ctx: Context) -> None:
        obj.key, obj.name, obj.repeat = data["key"], data["name"], data["repeat"]
        obj.mitigation_due = parse_duration(data["mitigation_due"])
        obj.ack_timeout = parse_duration(data["ack_timeout"])

    def after_save(self, obj: EscalationPolicy, data: dict, ctx: Context) -> None:
        stored = {level.position: level for level in EscalationLevel.objects.filter(policy=obj)}
        for position, level in enumerate(data["levels"], start=1):
            values = {
                "targets": level["notify"],
                "wait": parse_duration(level["wait"]),
                "business_hours": level["business_hours"],
            }
            row = stored.get(position)
            if row is None:
                EscalationLevel.objects.create(organization=ctx.org, policy=obj, position=position, **values)
            elif any(getattr(row, name) != value for name, value in values.items()):
                EscalationLevel.objects.filter(pk=row.pk).update(**values)
        EscalationLevel.objects.filter(policy=obj, position__gt=len(data["levels"])).delete()

"""The `organization` mapping: name, timezone, business hours, default escalation policy and how long raw measurements
are kept."""

from __future__ import annotations

import re
from datetime import time

from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry
from governance.manifest.sections import Section, strip_defaults
from governance.models import WEEKDAYS, Organization, validate_timezone
from governance.services.organizations import organization_create, organization_update

DEFAULT_BUSINESS_HOURS = {"days": WEEKDAYS[:5], "start": "09:00", "end": "17:00"}
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _time(entry: Entry, name: str, default: str) -> str:
    value = entry.raw.get(name)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:00 as the base-60 number 1020.
        entry.error(name, 'must be a time in quotes, like "17:00" (unquoted, YAML reads it as a number)')
        return default
    match = TIME.match(value.strip()) if isinstance(value, str) else None
    if not match:
        entry.error(name, f'must be a time like "09:00", not {value!r}')
        return default
    return f"{int(match.group(1)):02d}:{match.group(2)}"


class OrganizationSection(Section):
    fields = ("organization",)
    entry_fields = ("slug", "name", "timezone", "business_hours", "default_escalation", "raw_measurement_days")

    def validate(self, doc: dict, ctx: Context) -> None:
        entry = Entry(
            doc.get("organization"), "organization", ctx.errors, fields=self.entry_fields, required=("slug", "name")
        )
        data = {
            "slug": entry.text("slug"),  # checked (and required) before the sections run
            "name": entry.text("name"),
            "timezone": entry.text("timezone", default="UTC", max_length=64, validator=validate_timezone),
            "business_hours": self.business_hours(entry),
            "default_escalation": entry.ref("default_escalation", ctx, "escalation_policies"),
            # Absent: every raw point is kept (scorecards.storage rolls up older ones when it is set).
            "raw_measurement_days": entry.integer("raw_measurement_days", default=None, low=7, high=36_500),
        }
        ctx.parsed["organization"] = {data["slug"]: data}

    def business_hours(self, entry: Entry) -> dict:
        hours = entry.mapping("business_hours", fields=("days", "start", "end"))
        if hours is None:
            return dict(DEFAULT_BUSINESS_HOURS)
        days = hours.strings("days", check=lambda d: "" if d in WEEKDAYS else f'"{d}" is not one of {WEEKDAYS}')
        if hours.has("days") and not days and not hours.failed:
            hours.error("days", "must name at least one weekday")
        data = {
            "days": sorted(days, key=WEEKDAYS.index) if hours.has("days") else DEFAULT_BUSINESS_HOURS["days"],
            "start": _time(hours, "start", DEFAULT_BUSINESS_HOURS["start"]),
            "end": _time(hours, "end", DEFAULT_BUSINESS_HOURS["end"]),
        }
        if not hours.failed and data["start"] >= data["end"]:
            hours.error("end", "business hours must end after they start")
        return data

    def canonical(self, org: Organization) -> dict:
        return {
            "slug": org.slug,
            "name": org.name,
            "timezone": org.timezone,
            "business_hours": {
                "days": sorted(org.business_days, key=lambda d: WEEKDAYS.index(d) if d in WEEKDAYS else 7),
                "start": org.business_start.strftime("%H:%M"),
                "end": org.business_end.strftime("%H:%M"),
            },
            "default_escalation": org.default_escalation or None,
            "raw_measurement_days": org.raw_measurement_days,
        }

    def plan(self, doc: dict, ctx: Context) -> list[Change]:
        ((slug, data),) = ctx.parsed["organization"].items()
        if ctx.org is None:
            return [Change("create", "organization", slug, data=data, section=self)]
        before = self.canonical(ctx.org)
        fields = [(name, before[name], value) for name, value in data.items() if before[name] != value]
        return [Change("update", "organization", slug, fields, data=data, section=self)] if fields else []

    def apply(self, plan: list[Change], ctx: Context) -> None:
        for change in plan:
            data = change.data
            if change.action == "create":
                ctx.org = organization_create(
                    creator=ctx.admin, slug=data["slug"], name=data["name"], timezone_name=data["timezone"]
                )
            hours = data["business_hours"]
            organization_update(
                org=ctx.org,
                actor=ctx.actor,
                name=data["name"],
                timezone=data["timezone"],
                business_days=hours["days"],
                business_start=time.fromisoformat(hours["start"]),
                business_end=time.fromisoformat(hours["end"]),
                default_escalation=data["default_escalation"] or "",
                raw_measurement_days=data["raw_measurement_days"],
            )

    def export(self, org: Organization) -> dict:
        data = self.canonical(org)
        return {
            "organization": strip_defaults(
                data,
                {"business_hours": DEFAULT_BUSINESS_HOURS, "default_escalation": None, "raw_measurement_days": None},
            )
        }

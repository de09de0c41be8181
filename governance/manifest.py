"""The organization manifest (MANIFEST.md): validate a whole document, plan the changes, apply them at once.

Each app describes its part of the document as a `Section`. `SECTIONS` lists them by dotted path in layer
order (governance <- scorecards <- dependencies <- escalations) and they are imported lazily, so this module
imports no app to its right. One apply runs these steps over every section:

1. collect: each section names the keys its list declares, plus the live ones in the database (only the
   declared ones under prune, since the others are about to be archived), so that a reference from any
   section is checked against the document and the database alike;
2. validate: each entry becomes its canonical form (defaults filled in, durations spelled by
   format_duration, dates ISO, numbers without a needless ".0"); every problem is recorded with its path,
   nothing stops at the first one;
3. plan: the canonical form of each stored object is compared field by field with the document's;
4. apply: only when there is no error, in one transaction, through each app's services where one exists
   (they write their own audit events); the rest is audit-logged here, and one `manifest.applied` event per
   apply that changed anything carries the checksum and the counts.

The export is the canonical form of the stored objects minus the fields equal to their defaults, so that
export -> apply changes nothing. Missing optional fields mean their default (the manifest is declarative):
leaving out `lead` removes a team's lead.

Governance's own part, decided where MANIFEST.md is silent:
- `organization.slug` names the organization and cannot be changed by a manifest; `timezone` defaults to UTC
  and `business_hours` to mon-fri 09:00-17:00 (times are "HH:MM" strings).
- `members[].name` is informational: a user's account is shared by every organization they belong to, so an
  organization's manifest does not rename people. It is exported from the account.
- A member always belongs to the teams they lead (as in team_update), so those count as listed.
- Emails without a membership are invited (a pending invitation with another role or teams is replaced);
  a deactivated member named in a manifest is an error: reactivating someone is a decision for the app.
- Teams and members are never pruned; under prune the diff lists them as skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import yaml
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.module_loading import import_string

from governance import services
from governance.durations import format_duration, parse_duration
from governance.models import (
    CONTROL_CHARACTERS,
    WEEKDAYS,
    Invitation,
    Membership,
    Organization,
    Role,
    Team,
    User,
    key_validator,
    slug_validator,
    validate_timezone,
)

VERSION = 1
# A manifest is a few levels deep and at most a few hundred thousand values; YAML aliases can make a small text
# expand into billions (each alias of an alias multiplies), so the expanded document is measured before use.
MAX_DEPTH = 32
MAX_VALUES = 250_000
# The document's order: errors are listed and the export is written in it.
DOCUMENT_ORDER = (
    "version",
    "organization",
    "teams",
    "members",
    "escalation_policies",
    "kpis",
    "dependencies",
    "objectives",
    "scorecards",
    "data_sources",
)
# Layer order: what a section refers to by foreign key is applied before it.
SECTIONS = (
    "governance.manifest.OrganizationSection",
    "governance.manifest.TeamsSection",
    "governance.manifest.MembersSection",
    "scorecards.manifest.DataSourcesSection",
    "scorecards.manifest.KpisSection",
    "scorecards.manifest.ObjectivesSection",
    "scorecards.manifest.KeyResultsSection",
    "scorecards.manifest.ScorecardsSection",
    "dependencies.manifest.DependenciesSection",
    "escalations.policies.manifest.EscalationPoliciesSection",
)
LABELS = {
    "teams": "team",
    "kpis": "KPI",
    "objectives": "objective",
    "data_sources": "data source",
    "escalation_policies": "escalation policy",
}
DEFAULT_BUSINESS_HOURS = {"days": WEEKDAYS[:5], "start": "09:00", "end": "17:00"}
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ManifestError(list):
    """Every problem of a manifest as (path, message) pairs, e.g. ("kpis[3].owner", 'unknown member "x@y"')."""

    def add(self, path: str, message: str) -> None:
        self.append((path, message))

    def lines(self) -> list[str]:
        return [f"{path}: {message}" for path, message in self]

    def as_list(self) -> list[dict]:
        """The API's shape: [{"path": ..., "message": ...}]."""
        return [{"path": path, "message": message} for path, message in self]


@dataclass
class Change:
    """One object to create, update, archive or delete, with the fields that differ (before, after)."""

    action: str  # create | update | archive | delete | skip
    kind: str  # how the diff names the object: "kpi", "team", ...
    key: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    note: str = ""
    data: dict | None = field(default=None, repr=False)  # the document's canonical form of the object
    obj: Any = field(default=None, repr=False)  # the stored object, for updates and archives
    section: Section | None = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> list[str]:
        return [name for name, _before, _after in self.fields]

    def as_dict(self) -> dict:
        """Plain JSON, for the API's dry run."""
        fields = [{"field": name, "before": before, "after": after} for name, before, after in self.fields]
        return {"action": self.action, "kind": self.kind, "key": self.key, "fields": fields, "note": self.note}


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    errors: ManifestError = field(default_factory=ManifestError)
    skipped: list[Change] = field(default_factory=list)  # teams and members a prune leaves alone
    checksum: str = ""
    organization: Organization | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Context:
    """What every section shares during one apply: the organization, the document and the key sets."""

    org: Organization | None
    doc: dict
    actor: User | None = None
    admin: User | None = None  # first admin when the manifest creates the organization
    decider: User | None = None  # recorded as deciding an ownership change: the actor, or an org token's creator
    prune: bool = False
    checksum: str = ""
    errors: ManifestError = field(default_factory=ManifestError)
    # Keys a reference may name, per document list ("teams", "kpis", ...): declared or live in the database.
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    active_members: set[str] = field(default_factory=set)  # may own, lead and be assigned
    inactive_members: set[str] = field(default_factory=set)
    invited: set[str] = field(default_factory=set)  # pending invitations and emails the document adds
    parsed: dict[str, dict[str, dict]] = field(default_factory=dict)  # list name -> key -> canonical form
    objects: dict[tuple[type, str], Any] = field(default_factory=dict, repr=False)  # looked up or created

    @property
    def reason(self) -> str:
        return f"organization manifest sha256:{self.checksum}"

    @property
    def members(self) -> set[str]:
        """Everyone a target or viewer may name: active members and the invited."""
        return self.active_members | self.invited

    def get(self, model: type[Model], key: str) -> Any:
        """A stored object of this organization by key (including the ones this apply created)."""
        if (model, key) not in self.objects:
            self.objects[model, key] = model.objects.get(organization=self.org, key=key)
        return self.objects[model, key]

    def remember(self, obj: Model) -> None:
        self.objects[type(obj), obj.key] = obj

    def membership(self, email: str) -> Membership:
        if (Membership, email) not in self.objects:
            self.objects[Membership, email] = Membership.objects.select_related("user").get(
                organization=self.org, user__email__iexact=email
            )
        return self.objects[Membership, email]

    def audit(
        self,
        verb: str,
        obj: Model,
        change: Change | None = None,
        *,
        before: dict | None = None,
        after: dict | None = None,
    ) -> None:
        """The audit event of a write made here because no service of the object's app covers it."""
        if change is not None and change.action == "update":
            before = {name: value for name, value, _ in change.fields}
            after = {name: value for name, _, value in change.fields}
        elif change is not None and change.action == "create":
            after = change.data
        services.audit_log(org=self.org, actor=self.actor, verb=verb, obj=obj, before=before, after=after)


# --- reading the document -----------------------------------------------------------------------


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def num(value: float | int) -> float | int:
    """1200.0 -> 1200: stored floats read back as the integers people wrote."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 1e15 else value


class Entry:
    """One mapping of the document read field by field; every problem becomes an error, nothing raises.

    Each reader returns the canonical value, or the default when the field is absent or wrong; `failed`
    tells whether this entry (or one of its sub-mappings) had an error.
    """

    def __init__(
        self,
        raw: object,
        path: str,
        errors: ManifestError,
        *,
        fields: Sequence[str],
        required: Sequence[str] = (),
        parent: Entry | None = None,
    ) -> None:
        self.path, self.errors, self.parent, self.failed = path, errors, parent, False
        self.raw: dict = raw if isinstance(raw, dict) else {}
        if not isinstance(raw, dict):
            self.error(None, f"must be a mapping, not {describe(raw)}")
            return
        for name in raw:
            if name not in fields:
                self.error(name, "unknown field")
        for name in required:
            if raw.get(name) is None:
                self.error(name, "is required")

    def at(self, name: object) -> str:
        return self.path if name is None else f"{self.path}.{name}"

    def error(self, name: object, message: str) -> None:
        self.errors.add(self.at(name), message)
        entry: Entry | None = self
        while entry is not None:
            entry.failed = True
            entry = entry.parent

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def text(
        self,
        name: str,
        *,
        default: str | None = None,
        max_length: int = 200,
        choices: Sequence[str] = (),
        validator: Callable[[str], None] | None = None,
        multiline: bool = False,
    ) -> str | None:
        """A string field, stripped; one line (single_line_validator) unless `multiline`."""
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(name, f"must be a string, not {describe(value)}")
            return default
        value = value.strip()
        if not value:
            self.error(name, "must not be empty")
        elif len(value) > max_length:
            self.error(name, f"must be at most {max_length} characters")
        elif not multiline and CONTROL_CHARACTERS.search(value):
            self.error(name, "must be one line, without line breaks, tabs or other control characters")
        elif choices and value not in choices:
            self.error(name, f'"{value}" is not one of {", ".join(choices)}')
        elif validator is not None:
            try:
                validator(value)
            except ValidationError as e:
                self.error(name, f'"{value}": {" ".join(e.messages)}')
        return value

    def key(self, name: str = "key") -> str | None:
        return self.text(name, max_length=64, validator=key_validator)

    def email(self, name: str) -> str | None:
        value = self.text(name, max_length=254, validator=validate_email)
        return value.lower() if value else value

    def number(self, name: str, *, default: float | int | None = None) -> float | int | None:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(name, f"must be a number, not {describe(value)}")
            return default
        if not math.isfinite(value):
            self.error(name, "must be a finite number")
            return default
        return num(value)

    def integer(self, name: str, *, default: int, low: int, high: int) -> int:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"must be a whole number from {low} to {high}, not {describe(value)}")
            return default
        if not low <= value <= high:
            self.error(name, f"must be from {low} to {high}, not {value}")
        return value

    def boolean(self, name: str, *, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(name, f"must be true or false, not {describe(value)}")
            return default
        return value

    def duration(self, name: str, *, default: str | None = None, positive: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.error(name, f'must be a duration like "2h" or "7d", not {describe(value)}')
            return default
        try:
            delta = parse_duration(value)
        except ValueError as e:
            self.error(name, str(e))
            return default
        if positive and not delta:
            self.error(name, "must be longer than 0m")
        return format_duration(delta)

    def day(self, name: str) -> str | None:
        """A calendar date, as an ISO string (YAML reads 2026-12-31 as a date, JSON as a string)."""
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                pass
        self.error(name, f"must be a date like 2026-12-31, not {describe(value)}")
        return None

    def items(self, name: str) -> list:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(name, f"must be a list, not {describe(value)}")
            return []
        return value

    def strings(self, name: str, *, check: Callable[[str], str | None] | None = None) -> list[str]:
        """A list of distinct strings; `check` returns an error message for a bad one."""
        values: list[str] = []
        for i, value in enumerate(self.items(name)):
            if not isinstance(value, str) or not value.strip():
                self.error(f"{name}[{i}]", f"must be a non-empty string, not {describe(value)}")
            elif value.strip() in values:
                self.error(f"{name}[{i}]", f'"{value.strip()}" is listed twice')
            elif check is not None and (message := check(value.strip())):
                self.error(f"{name}[{i}]", message)
            else:
                values.append(value.strip())
        return values

    def mapping(self, name: str, *, fields: Sequence[str], required: Sequence[str] = ()) -> Entry | None:
        if self.raw.get(name) is None:
            return None
        return Entry(self.raw[name], self.at(name), self.errors, fields=fields, required=required, parent=self)

    # References to other parts of the document (or the database).

    def ref(self, name: str, ctx: Context, kind: str) -> str | None:
        value = self.key(name)
        if value and value not in ctx.keys[kind]:
            self.error(name, f'unknown {LABELS[kind]} "{value}"')
        return value

    def member(self, name: str, ctx: Context) -> str | None:
        """An email of an active member: KPI and objective owners, team leads."""
        email = self.email(name)
        if email:
            message = member_problem(email, ctx)
            if message:
                self.error(name, message)
        return email


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


def find_path(start: str, goal: str, following: Callable[[str], Iterable[str]]) -> list[str] | None:
    """The shortest path start -> ... -> goal along `following`, or None."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in following(node):
            if nxt == goal:
                return [*paths[node], goal]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def find_cycle(start: str, following: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A path start -> ... -> start along `following`, or None."""
    return find_path(start, start, following)


def parents_first(desired: dict[str, dict], parent_field: str = "parent") -> list[str]:
    """Keys ordered so that a parent named in the document comes before its children (no cycles here)."""
    ordered: list[str] = []
    done: set[str] = set()

    def visit(key: str, depth: int = 0) -> None:
        if key in done or depth > len(desired):
            return
        parent = desired[key].get(parent_field)
        if parent in desired:
            visit(parent, depth + 1)
        done.add(key)
        ordered.append(key)

    for key in desired:
        visit(key)
    return ordered


def strip_defaults(data: dict, defaults: dict) -> dict:
    return {name: value for name, value in data.items() if name not in defaults or defaults[name] != value}


# --- sections -----------------------------------------------------------------------------------


class Section:
    """One part of the document. A subclass reads its lists, plans their changes, applies and exports them."""

    fields: tuple[str, ...] = ()  # the top-level document keys this section reads

    def collect(self, doc: dict, ctx: Context) -> None:
        """Adds the keys the document declares (and the live stored ones) to ctx.keys."""

    def validate(self, doc: dict, ctx: Context) -> None:
        raise NotImplementedError

    def plan(self, doc: dict, ctx: Context) -> list[Change]:
        raise NotImplementedError

    def apply(self, plan: list[Change], ctx: Context) -> None:
        raise NotImplementedError

    def export(self, org: Organization) -> dict:
        raise NotImplementedError


class KeyedSection(Section):
    """A document list of objects named by a key: create, update or (with prune) archive each one.

    Subclasses say how an entry reads (`normalize`, returning the canonical form with defaults filled
    in), how a stored object reads (`canonical`, the same shape), and how to write (`create`, `update`,
    `archive`).
    """

    field: str  # the document's list, "kpis"
    kind: str  # the diff's name of one object, "kpi"
    entry_fields: tuple[str, ...]
    required: tuple[str, ...] = ("key",)
    key_name = "key"
    prunable = True
    prune_action = "archive"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    # To implement.

    def normalize(self, entry: Entry, ctx: Context) -> dict:
        raise NotImplementedError

    def stored(self, org: Organization) -> Iterable[Any]:
        """Every object of the organization, archived ones included (keys stay unique across both)."""
        raise NotImplementedError

    def canonical(self, obj: Any) -> dict:
        raise NotImplementedError

    def defaults(self, data: dict) -> dict:
        return {}

    # Writes. These defaults are for models no service of their app writes yet: assign the canonical form
    # (`assign`, then `after_save` for many-to-many and child rows), validate, save, and audit here.

    model: type[Model]

    def assign(self, obj: Any, data: dict, ctx: Context) -> None:
        raise NotImplementedError

    def after_save(self, obj: Any, data: dict, ctx: Context) -> None:
        pass

    def create(self, change: Change, ctx: Context) -> None:
        obj = self.model(organization=ctx.org)
        self.assign(obj, change.data, ctx)
        self._save(obj, change, ctx, "created")

    def update(self, change: Change, ctx: Context) -> None:
        obj = change.obj
        self.assign(obj, change.data, ctx)
        if "archived" in change.changed:
            obj.archived_at = None
        self._save(obj, change, ctx, "updated")

    def _save(self, obj: Any, change: Change, ctx: Context, verb: str) -> None:
        obj.full_clean()
        obj.save()
        self.after_save(obj, change.data, ctx)
        if hasattr(obj, "key"):
            ctx.remember(obj)
        ctx.audit(f"{self.kind}.{verb}", obj, change)

    def archive(self, change: Change, ctx: Context) -> None:
        obj = change.obj
        obj.archived_at = timezone.now()
        obj.save(update_fields=["archived_at"])
        ctx.audit(f"{self.kind}.archived", obj)

    # Shared behaviour.

    def key_of(self, obj: Any) -> str:
        return obj.key

    def data_key(self, data: dict) -> str | None:
        return data.get(self.key_name)

    def raw_key(self, item: dict) -> str | None:
        value = item.get(self.key_name)
        return value.strip() if isinstance(value, str) else None

    def is_archived(self, obj: Any) -> bool:
        return getattr(obj, "archived_at", None) is not None

    def is_exported(self, obj: Any) -> bool:
        return not self.is_archived(obj)

    def order(self, desired: dict[str, dict]) -> list[str]:
        return list(desired)

    def collect(self, doc: dict, ctx: Context) -> None:
        raw = doc.get(self.field)
        keys = ctx.keys[self.field]
        if isinstance(raw, list):
            keys.update(key for item in raw if isinstance(item, dict) and (key := self.raw_key(item)))
        if ctx.org is not None and not (ctx.prune and self.prunable):
            keys.update(self.key_of(obj) for obj in self.stored(ctx.org) if not self.is_archived(obj))

    def validate(self, doc: dict, ctx: Context) -> None:
        raw = doc.get(self.field)
        if raw is None:
            raw = []
        elif not isinstance(raw, list):
            ctx.errors.add(self.field, f"must be a list, not {describe(raw)}")
            raw = []
        desired: dict[str, dict] = {}
        self.paths: dict[str, str] = {}
        for i, item in enumerate(raw):
            entry = Entry(item, f"{self.field}[{i}]", ctx.errors, fields=self.entry_fields, required=self.required)
            data = self.normalize(entry, ctx)
            key = self.data_key(data)
            if key is None:
                continue
            if key in self.paths:
                self.duplicate(entry, key, self.paths[key])
                continue
            self.paths[key] = entry.path
            # Entries with errors stay in, so that checks across entries (cycles) still see them; nothing is
            # planned from them, as nothing is planned while there is any error.
            desired[key] = data
        ctx.parsed[self.field] = desired
        self.check(desired, ctx)

    def duplicate(self, entry: Entry, key: str, other: str) -> None:
        entry.error(self.key_name, f'duplicate {self.key_name} "{key}" (also {other})')

    def check(self, desired: dict[str, dict], ctx: Context) -> None:
        """Checks across entries (cycles, unique names); self.paths maps each key to its entry's path."""

    def plan(self, doc: dict, ctx: Context) -> list[Change]:
        desired = ctx.parsed.get(self.field, {})
        current = {self.key_of(obj): obj for obj in self.stored(ctx.org)} if ctx.org else {}
        changes = []
        for key in self.order(desired):
            data, obj = desired[key], current.get(key)
            if obj is None:
                changes.append(Change("create", self.kind, key, data=data, section=self))
                continue
            before = self.canonical(obj)
            fields = [(name, before.get(name), value) for name, value in data.items() if before.get(name) != value]
            if self.is_archived(obj):
                fields.insert(0, ("archived", True, False))
            if fields:
                changes.append(Change("update", self.kind, key, fields, data=data, obj=obj, section=self))
        if ctx.prune:
            for key, obj in current.items():
                if key not in desired and not self.is_archived(obj):
                    changes.append(self.prune(key, obj))
        return changes

    def prune(self, key: str, obj: Any) -> Change:
        if not self.prunable:
            return Change("skip", self.kind, key, note=f"{self.field} are never pruned", section=self)
        return Change(self.prune_action, self.kind, key, obj=obj, section=self)

    def apply(self, plan: list[Change], ctx: Context) -> None:
        for change in plan:
            if change.action == "create":
                self.create(change, ctx)
            elif change.action == "update":
                if hasattr(change.obj, "key"):
                    ctx.remember(change.obj)  # one instance per row, whoever refers to it next
                self.update(change, ctx)
            elif change.action in ("archive", "delete"):
                self.archive(change, ctx)

    def export(self, org: Organization) -> dict:
        objects = sorted((obj for obj in self.stored(org) if self.is_exported(obj)), key=self.key_of)
        items = []
        for obj in objects:
            data = self.canonical(obj)
            items.append(strip_defaults(data, self.defaults(data)))
        return {self.field: items} if items else {}


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
    entry_fields = ("slug", "name", "timezone", "business_hours", "default_escalation")

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
                ctx.org = services.organization_create(
                    creator=ctx.admin, slug=data["slug"], name=data["name"], timezone_name=data["timezone"]
                )
            hours = data["business_hours"]
            services.organization_update(
                org=ctx.org,
                actor=ctx.actor,
                name=data["name"],
                timezone=data["timezone"],
                business_days=hours["days"],
                business_start=time.fromisoformat(hours["start"]),
                business_end=time.fromisoformat(hours["end"]),
                default_escalation=data["default_escalation"] or "",
            )

    def export(self, org: Organization) -> dict:
        data = self.canonical(org)
        return {
            "organization": strip_defaults(data, {"business_hours": DEFAULT_BUSINESS_HOURS, "default_escalation": None})
        }


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
        team = services.team_create(
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
        services.team_update(
            team=team,
            actor=ctx.actor,
            name=data["name"],
            escalation=data["escalation"] or "",
            **self._relations(data, ctx),
        )


def report_parent_cycles(ctx: Context, desired: dict[str, dict], paths: dict[str, str], parents: dict) -> None:
    """One error per cycle of `parent` links, on the first entry of the document that is part of it."""
    reported: set[frozenset] = set()
    for key in desired:
        cycle = find_cycle(key, lambda k: [parents[k]] if parents.get(k) else [])
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            ctx.errors.add(f"{paths[key]}.parent", f"cycle {' -> '.join(cycle)}")


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
        rows = Membership.objects.for_org(ctx.org).filter(role=Role.ADMIN, is_active=True)
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
                    services.invitation_revoke(invitation=change.obj, actor=ctx.actor)
                teams = [ctx.get(Team, key) for key in data["teams"]]
                services.invitation_create(
                    org=ctx.org, actor=ctx.actor, email=data["email"], role=data["role"], teams=teams
                )
                continue
            membership = ctx.membership(change.key)
            if "role" in change.changed:
                services.membership_change_role(membership=membership, actor=ctx.actor, role=data["role"])
            if "teams" in change.changed:
                before = dict((n, b) for n, b, _ in change.fields)["teams"]
                for key in set(data["teams"]) - set(before):
                    joins[key].add(membership)
                for key in set(before) - set(data["teams"]):
                    leaves[key].add(membership)
        for key in sorted(set(joins) | set(leaves)):
            team = ctx.get(Team, key)
            members = (set(team.memberships.all()) - leaves[key]) | joins[key]
            services.team_set_members(team=team, actor=ctx.actor, members=members)

    def export(self, org: Organization) -> dict:
        items = []
        for obj in sorted([*self.stored(org), *self.invitations(org)], key=self.key_of):
            data = self.canonical(obj)
            name = obj.user.name if isinstance(obj, Membership) else ""
            data = {"email": data["email"], **({"name": name} if name else {}), **data}
            items.append(strip_defaults(data, {"role": Role.MEMBER, "teams": []}))
        return {"members": items} if items else {}


def team_problem(key: str, ctx: Context) -> str:
    return "" if key in ctx.keys["teams"] else f'unknown team "{key}"'


# --- parse, apply, export -----------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a manifest must not lose a field that way."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key; the base class words that error
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate field {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict:
    data = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate field {key!r}")
        data[key] = value
    return data


def _load(text: str) -> object:
    if not text.lstrip().startswith("{"):
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except json.JSONDecodeError:
        try:
            return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - YAML's flow style starts with "{" too
        except yaml.YAMLError:
            pass
        raise  # neither: the JSON error says more


def parse(source: str | bytes | dict, errors: ManifestError) -> tuple[dict | None, str]:
    """The document and the sha256 of what was sent (of its canonical JSON when it came parsed)."""
    if isinstance(source, dict):
        text = json.dumps(source, sort_keys=True, separators=(",", ":"), default=str)
        return source, hashlib.sha256(text.encode()).hexdigest()
    if isinstance(source, bytes):
        raw = source
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            errors.add("manifest", "is not UTF-8 text")
            return None, hashlib.sha256(raw).hexdigest()
    checksum = hashlib.sha256(source.encode()).hexdigest()
    try:
        doc = _load(source)
    except RecursionError:
        errors.add("manifest", f"is nested too deeply (at most {MAX_DEPTH} levels)")
        return None, checksum
    except json.JSONDecodeError as e:
        errors.add("manifest", f"line {e.lineno}, column {e.colno}: {e.msg} (not valid JSON)")
        return None, checksum
    except ValueError as e:
        errors.add("manifest", str(e))
        return None, checksum
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        errors.add("manifest", f"{where}{getattr(e, 'problem', None) or e} (not valid YAML)")
        return None, checksum
    if not isinstance(doc, dict):
        errors.add("manifest", f"must be a mapping with version, organization, teams, ..., not {describe(doc)}")
        return None, checksum
    problem = _size_problem(doc)
    if problem:
        errors.add("manifest", problem)
        return None, checksum
    return doc, checksum


def _size_problem(doc: dict) -> str:
    """Why the document is too big to validate once its YAML aliases are expanded, or "" when it is not.

    Aliases share one Python object, so each container's expanded size and height are computed once (by id) and
    reused, without expanding anything; a container that holds itself (`&a [*a]`) is refused."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[object, int, bool]] = [(doc, 1, False)]
    while stack:
        value, depth, finished = stack.pop()
        if not isinstance(value, dict | list):
            continue
        key = id(value)
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        if finished:
            on_path.discard(key)
            containers = [id(c) for c in children if isinstance(c, dict | list)]
            size[key] = 1 + len(children) - len(containers) + sum(size[c] for c in containers)
            height[key] = 1 + max((height[c] for c in containers), default=0)
        elif key in on_path:
            return "contains itself through a YAML alias"
        elif key not in size:
            on_path.add(key)
            stack.append((value, depth, True))
            stack.extend((child, depth + 1, False) for child in children)
            continue
        if depth + height[key] - 1 > MAX_DEPTH:
            return f"is nested too deeply (at most {MAX_DEPTH} levels)"
        if size[key] > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values once its YAML aliases are expanded"
    return ""


def sections() -> list[Section]:
    return [import_string(path)() for path in SECTIONS]


def _error_order(error: tuple[str, str]) -> tuple[int, int]:
    match = re.match(r"([a-z_]+)(?:\[(\d+)\])?", error[0])
    top, index = (match.group(1), match.group(2)) if match else ("", None)
    return (DOCUMENT_ORDER.index(top) if top in DOCUMENT_ORDER else -1, int(index) if index else -1)


def _check_document(doc: dict, errors: ManifestError, known: set[str]) -> str | None:
    """The top level, and the slug that names the organization (None when it cannot)."""
    for name in doc:
        if name not in known:
            errors.add(str(name), "unknown field")
    if doc.get("version") is None:
        errors.add("version", f"is required (this is version {VERSION})")
    elif doc["version"] != VERSION or isinstance(doc["version"], bool):
        errors.add("version", f"unsupported version {doc['version']!r}; this server reads version {VERSION}")
    organization = doc.get("organization")
    if organization is None:
        errors.add("organization", "is required")
        return None
    if not isinstance(organization, dict):
        errors.add("organization", f"must be a mapping, not {describe(organization)}")
        return None
    slug = organization.get("slug")
    if slug is None:
        errors.add("organization.slug", "is required")
        return None
    if not isinstance(slug, str):
        errors.add("organization.slug", f"must be a string, not {describe(slug)}")
        return None
    try:
        slug_validator(slug)
    except ValidationError as e:
        errors.add("organization.slug", f'"{slug}": {" ".join(e.messages)}')
        return None
    return slug


def apply_manifest(
    source: str | bytes | dict,
    *,
    actor: User | None = None,
    org: Organization | None = None,
    admin: User | None = None,
    dry_run: bool = False,
    prune: bool = False,
    decider: User | None = None,
    authorize: Callable[[list[Change]], None] | None = None,
) -> Result:
    """Validates the whole manifest and, when it has no error and this is no dry run, applies it at once.

    `actor` None means the CLI or an organization token. `org`, when given (an API token's organization), must
    be the one the manifest names. `admin` becomes the first admin when the manifest creates its organization
    (default: the actor). `decider` is recorded as deciding ownership changes (default: the actor).
    `authorize`, given the planned changes, may raise to refuse them (an API token's scopes). Nothing is
    written when there is any error, nor on a dry run.
    """
    errors = ManifestError()
    doc, checksum = parse(source, errors)
    result = Result(errors=errors, checksum=checksum)
    if doc is None:
        return result
    parts = sections()
    slug = _check_document(doc, errors, {"version", *(name for part in parts for name in part.fields)})
    if slug is None:
        errors.sort(key=_error_order)
        return result
    with transaction.atomic():
        stored = Organization.objects.filter(slug=slug)
        stored = stored.first() if dry_run else stored.select_for_update().first()
        ctx = Context(
            org=stored,
            doc=doc,
            actor=actor,
            admin=admin or actor,
            decider=decider or actor,
            prune=prune,
            checksum=checksum,
            errors=errors,
        )
        _check_access(ctx, slug, org)
        _load_people(ctx)
        for part in parts:
            part.collect(doc, ctx)
        for part in parts:
            part.validate(doc, ctx)
        if not errors:
            plan = [(part, part.plan(doc, ctx)) for part in parts]
            result.changes = [c for _, changes in plan for c in changes if c.action != "skip"]
            result.skipped = [c for _, changes in plan for c in changes if c.action == "skip"]
            if authorize is not None:
                authorize(result.changes)
            if not dry_run and result.changes:
                _apply(plan, ctx, result)
        result.organization = ctx.org
        if errors or dry_run:
            transaction.set_rollback(True)
    errors.sort(key=_error_order)
    return result


def _check_access(ctx: Context, slug: str, org: Organization | None) -> None:
    if org is not None and org.slug != slug:
        ctx.errors.add("organization.slug", f'this manifest is for "{slug}", not for "{org.slug}"')
    elif ctx.org is None and ctx.admin is None:
        ctx.errors.add(
            "organization.slug",
            f'no organization "{slug}" exists; to create it, name its first admin (apply_manifest --admin EMAIL)',
        )
    if ctx.org is not None and ctx.actor is not None:
        is_admin = Membership.objects.filter(organization=ctx.org, user=ctx.actor, role=Role.ADMIN, is_active=True)
        if not is_admin.exists():
            ctx.errors.add("manifest", f"only an admin of {ctx.org} may apply its manifest")


def _load_people(ctx: Context) -> None:
    if ctx.org is None:
        ctx.active_members = {ctx.admin.email.lower()} if ctx.admin else set()
    else:
        for email, active in Membership.objects.for_org(ctx.org).values_list("user__email", "is_active"):
            (ctx.active_members if active else ctx.inactive_members).add(email.lower())
        pending = Invitation.objects.for_org(ctx.org).filter(accepted_at=None, revoked_at=None)
        ctx.invited = {i.email.lower() for i in pending if i.state == "pending"}
    members = ctx.doc.get("members")
    if isinstance(members, list):
        declared = {
            m["email"].strip().lower() for m in members if isinstance(m, dict) and isinstance(m.get("email"), str)
        }
        ctx.invited |= declared - ctx.active_members - ctx.inactive_members


def _apply(plan: list[tuple[Section, list[Change]]], ctx: Context, result: Result) -> None:
    try:
        with transaction.atomic():  # a savepoint: a failed write leaves the transaction usable for the rollback
            for part, changes in plan:
                part.apply(changes, ctx)
    except (ValidationError, PermissionDenied, IntegrityError, ObjectDoesNotExist) as e:
        # A rule a service enforces that validation did not foresee: the whole apply is undone.
        messages = e.messages if isinstance(e, ValidationError) else [str(e)]
        ctx.errors.extend(("manifest", f"could not apply: {message}") for message in messages)
        return
    counts: dict[str, int] = defaultdict(int)
    for change in result.changes:
        counts[f"{change.action}d"] += 1
    services.audit_log(
        org=ctx.org,
        actor=ctx.actor,
        verb="manifest.applied",
        obj=ctx.org,
        after={"sha256": ctx.checksum, "prune": ctx.prune, **counts},
    )


def export_manifest(org: Organization) -> dict:
    """The organization as a manifest, in MANIFEST.md's order; applying it changes nothing."""
    parts: dict[str, Any] = {"version": VERSION}
    for part in sections():
        parts.update(part.export(org))
    return {name: parts[name] for name in DOCUMENT_ORDER if name in parts}


class _FlowMapping(dict):
    pass


class _FlowList(list):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FlowMapping, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _is_plain(value: object) -> bool:
    return not isinstance(value, dict | list) or (isinstance(value, list) and all(map(_is_plain, value)))


def _styled(value: object, *, block: bool = False) -> object:
    """Small values of a field stay on one line ({fn: sum, window: 7d}, [mon, tue]) as in MANIFEST.md;
    sections, their objects and anything nested deeper are written as blocks."""
    if isinstance(value, list):
        if value and all(not isinstance(v, dict | list) for v in value):
            return _FlowList(value)
        return [_styled(v, block=True) for v in value]
    if isinstance(value, dict):
        styled = {k: _styled(v) for k, v in value.items()}
        return styled if block or not all(map(_is_plain, value.values())) else _FlowMapping(styled)
    return value


def dump_yaml(data: dict) -> str:
    styled = {name: _styled(value, block=True) for name, value in data.items()}
    return yaml.dump(styled, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


# --- the diff -----------------------------------------------------------------------------------


def show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def render_diff(changes: Sequence[Change]) -> str:
    """One line per created, archived or deleted object and per changed field; "No changes." when none."""
    lines = []
    for change in changes:
        label = f"{change.kind} {change.key}"
        note = f" ({change.note})" if change.note else ""
        if change.action == "create":
            lines.append(f"+ {label}{note}")
        elif change.action == "update":
            for name, before, after in change.fields:
                extra = " (ownership transfer)" if name == "owner" and change.kind == "kpi" else note
                lines.append(f"~ {label}: {name} {show(before)} -> {show(after)}{extra}")
        elif change.action in ("archive", "delete"):
            lines.append(f"- {label} ({change.action})")
        elif change.action == "skip":
            lines.append(f"  {label}: not in the manifest, skipped ({change.note})")
    if not any(change.action != "skip" for change in changes):
        lines.insert(0, "No changes.")
    return "\n".join(lines)

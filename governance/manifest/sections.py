"""The base classes of every app's part of the document: `Section`, and `KeyedSection` for a list of keyed objects."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Model
from django.utils import timezone

from governance.manifest.context import Change, Context
from governance.manifest.fields import Entry, describe
from governance.models import Organization


def strip_defaults(data: dict, defaults: dict) -> dict:
    return {name: value for name, value in data.items() if name not in defaults or defaults[name] != value}


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

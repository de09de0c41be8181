"""Reading one mapping of the document field by field into its canonical form (`Entry`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from governance.durations import format_duration, parse_duration
from governance.manifest.context import Context, ManifestError
from governance.manifest.targets import member_problem
from governance.models import CONTROL_CHARACTERS, key_validator

LABELS = {
    "teams": "team",
    "kpis": "KPI",
    "objectives": "objective",
    "data_sources": "data source",
    "escalation_policies": "escalation policy",
}


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

    def integer(self, name: str, *, default: int | None, low: int, high: int) -> int | None:
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

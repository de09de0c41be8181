"""Measurements from every way in (API, CSV, pulls): one validation.

A `Checker` validates raw items and keeps every problem with where it was found (an item's index, a CSV
line); `scorecards.ingestion.store.measurements_store` writes the good rows in one transaction. Callers store
only when the checker found nothing wrong, so a rejected delivery stores nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from django.conf import settings
from django.utils import timezone

from governance.durations import format_duration
from governance.models import Organization, key_validator
from scorecards.models import EPOCH, Kpi, NonFinite

MANUAL_REFUSED = "is a manual KPI: its values are entered and confirmed on its page, not sent"
CALCULATED_REFUSED = "is a calculated KPI: its values come from its formula, not sent"


@dataclass(frozen=True)
class Problem:
    where: int  # the item's index (API) or the file's line number (CSV)
    field: str  # "kpi", "at", "value", or "" for the whole item
    message: str


class Checker:
    """Validates measurements for one organization, collecting every problem and every good row.

    `naive_tz`: the zone for times without one (the organization's, for pulls); None rejects them, as the
    API and CSV do, because a guessed zone silently shifts data by hours. `unit` names what `where` counts in
    messages ("item" for the API's list, "line" for a file, "row" for a query).
    """

    def __init__(
        self, org: Organization, *, now: datetime | None = None, naive_tz: tzinfo | None = None, unit: str = "item"
    ):
        self.org, self.unit = org, unit
        self.latest = (now or timezone.now()) + settings.MEASUREMENT_MAX_FUTURE
        self.naive_tz = naive_tz
        self.kpi_ids: dict[str, int | None] = {}
        # Keys of KPIs that take no sent values, with why: a sent value would be overwritten or never confirmed.
        self.refused: dict[str, str] = {}
        self.rows: list[tuple[int, datetime, float]] = []
        self.problems: list[Problem] = []
        self._seen: dict[tuple[int, datetime], int] = {}

    @property
    def ok(self) -> bool:
        return not self.problems

    def resolve(self, keys: Iterable[object]) -> None:
        """Looks up, in one query, the KPI keys not seen yet (archived KPIs take no data)."""
        missing = {key for key in keys if isinstance(key, str) and key not in self.kpi_ids}
        if not missing:
            return
        # Only what could be a key is looked up (a NUL character, for one, is more than PostgreSQL can compare).
        candidates = [key for key in missing if key_validator.regex.fullmatch(key)]
        kpis = Kpi.objects.for_org(self.org).filter(key__in=candidates, archived_at=None)
        found = {row[0]: row[1:] for row in kpis.values_list("key", "id", "manual", "formula")} if candidates else {}
        self.kpi_ids |= {key: found[key][0] if key in found else None for key in missing}
        for key, (_, manual, formula) in found.items():
            if manual is not None:
                self.refused[key] = MANUAL_REFUSED
            elif formula:
                self.refused[key] = CALCULATED_REFUSED

    def add(self, where: int, kpi: object, at: object, value: object) -> None:
        problems = len(self.problems)
        kpi_id = self._kpi(where, kpi)
        moment = self._at(where, at)
        number = self._value(where, value)
        if len(self.problems) > problems or kpi_id is None or moment is None or number is None:
            return
        first = self._seen.setdefault((kpi_id, moment), where)
        if first != where:
            self.problem(where, "at", f"{kpi} already has a value at this time in {self.unit} {first}")
            return
        self.rows.append((kpi_id, moment, number))

    def problem(self, where: int, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message))

    def _kpi(self, where: int, kpi: object) -> int | None:
        if not isinstance(kpi, str) or not kpi:
            self.problem(where, "kpi", "must be a KPI key")
            return None
        if kpi not in self.kpi_ids:
            self.resolve([kpi])
        kpi_id = self.kpi_ids[kpi]
        if kpi_id is None:
            # Control characters escaped: the problems of an import are stored, and PostgreSQL refuses a NUL.
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in kpi[:64])
            self.problem(where, "kpi", f'unknown KPI "{shown}"')
        elif kpi in self.refused:
            self.problem(where, "kpi", self.refused[kpi])
            return None
        return kpi_id

    def _at(self, where: int, at: object) -> datetime | None:
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at.strip())
            except ValueError:
                self.problem(where, "at", "must be an ISO 8601 time with a zone, e.g. 2026-11-29T08:00:00+01:00")
                return None
        elif isinstance(at, date) and not isinstance(at, datetime) and self.naive_tz is not None:
            at = datetime.combine(at, time(0))
        if not isinstance(at, datetime):
            self.problem(where, "at", "must be an ISO 8601 time with a zone, e.g. 2026-11-29T08:00:00+01:00")
            return None
        if at.tzinfo is None or at.utcoffset() is None:
            if self.naive_tz is None:
                self.problem(where, "at", "has no zone; add one, e.g. +01:00 or Z")
                return None
            at = at.replace(tzinfo=self.naive_tz)
        try:
            at = at.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC
            at = EPOCH - timedelta(microseconds=1)
        if at < EPOCH:
            self.problem(where, "at", "is before 1970")
            return None
        if at > self.latest:
            self.problem(where, "at", f"is more than {format_duration(settings.MEASUREMENT_MAX_FUTURE)} in the future")
            return None
        return at

    def _value(self, where: int, value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or isinstance(value, NonFinite):
            self.problem(where, "value", "must be a finite number")
            return None
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.problem(where, "value", "must be a finite number")
            return None
        if abs(number) > settings.MEASUREMENT_MAX_ABS:
            bound = f"{settings.MEASUREMENT_MAX_ABS:g}"
            self.problem(where, "value", f"must be between -{bound} and {bound}")
            return None
        return number

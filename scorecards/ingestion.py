"""Measurements from every way in (API, CSV, pulls): one validation, one all-or-nothing write.

A `Checker` validates raw items and keeps every problem with where it was found (an item's index, a CSV
line); `measurements_store` writes the good rows in one transaction. Callers store only when the checker
found nothing wrong, so a rejected delivery stores nothing at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from governance.durations import format_duration
from governance.models import Organization, key_validator
from scorecards.models import EPOCH, Kpi, KpiSchedule, Measurement, MeasurementRevision

PORTABLE_CHUNK = 500  # SQLite limits the parameters of one statement


@dataclass(frozen=True)
class Problem:
    where: int  # the item's index (API) or the file's line number (CSV)
    field: str  # "kpi", "at", "value", or "" for the whole item
    message: str


class NonFinite(float):
    """What the API's JSON parser makes of NaN and Infinity, so that they are rejected item by item."""


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
        found = dict(kpis.values_list("key", "id")) if candidates else {}
        self.kpi_ids |= {key: found.get(key) for key in missing}

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


def measurements_store(
    *, org: Organization, rows: list[tuple[int, datetime, float]], source: str, now: datetime | None = None
) -> int:
    """Stores checked rows at once and marks their KPIs for evaluation; returns how many rows were given.

    A new (kpi, at) is inserted; a different value for a stored one replaces it and keeps the old value as a
    `MeasurementRevision`; the same value again changes nothing. Evaluation is queued once the data commits.
    Each backend locks the KPIs first, in id order: deliveries for the same KPIs then run one after the other
    (each sees the other's rows and keeps their revisions) without deadlocks, and the sweep skips those KPIs
    until the data is committed.
    """
    if not rows:
        return 0
    now = now or timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            _upsert_postgresql(org, rows, source, now)
        else:
            _upsert_portable(org, rows, source, now)
        transaction.on_commit(lambda: _queue_evaluation(org.pk), robust=True)
    return len(rows)


def _queue_evaluation(org_id: int) -> None:
    # Without a worker the beat sweep still finds these KPIs (KpiSchedule.needs_evaluation); this only makes it sooner.
    # By name: scorecards.tasks imports this module (ScorecardsConfig.ready registers the tasks).
    current_app.tasks["scorecards.tasks.evaluate_kpis"].delay(org_id=org_id)


def _upsert_postgresql(org: Organization, rows: list, source: str, now: datetime) -> None:
    """The rows travel by binary COPY into a temporary table; new points go in with one insert, and only when
    some (kpi, at) was stored before does a second statement keep the old values as revisions and replace them."""
    kpi, measurement = Kpi._meta.db_table, Measurement._meta.db_table
    schedule, revision = KpiSchedule._meta.db_table, MeasurementRevision._meta.db_table
    params = {"now": now, "org": org.pk, "source": source}
    # psycopg's own cursor: Django's client-side binding cannot COPY, and would spell every number out as text.
    with connection.psycopg_cursor() as cursor:
        cursor.execute(
            "SELECT id FROM " + kpi + " WHERE organization_id = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
            [org.pk, sorted({kpi_id for kpi_id, _, _ in rows})],
        )
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_measurement (kpi_id bigint, at timestamptz, value float8) "
            "ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE incoming_measurement")  # an earlier call in the same transaction left its rows
        with cursor.copy("COPY incoming_measurement (kpi_id, at, value) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "timestamptz", "float8"])
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"""
            WITH newest AS (
                SELECT kpi_id, max(at) AS at FROM incoming_measurement GROUP BY kpi_id
            ), measured AS (
                UPDATE {kpi} k SET last_measured_at = t.at FROM newest t
                WHERE k.id = t.kpi_id AND (k.last_measured_at IS NULL OR k.last_measured_at < t.at)
            ), marked AS (
                -- A KPI never scheduled (created in bulk) gets its schedule here.
                INSERT INTO {schedule} (kpi_id, organization_id, needs_evaluation, version)
                SELECT kpi_id, %(org)s, true, 0 FROM newest
                ON CONFLICT (kpi_id) DO UPDATE SET needs_evaluation = true WHERE NOT {schedule}.needs_evaluation
            ), inserted AS (
                INSERT INTO {measurement} (organization_id, kpi_id, at, value, source, ingested_at)
                SELECT %(org)s, kpi_id, at, value, %(source)s, %(now)s FROM incoming_measurement
                ON CONFLICT (kpi_id, at) DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM inserted
            """,
            params,
        )
        if cursor.fetchone()[0] == len(rows):
            return
        cursor.execute(
            f"""
            WITH stored AS (
                -- LIMIT 1 keeps this an index probe per row; a plain join may scan the whole table.
                SELECT m.*, i.value AS new_value FROM incoming_measurement i CROSS JOIN LATERAL (
                    SELECT * FROM {measurement} s WHERE s.kpi_id = i.kpi_id AND s.at = i.at LIMIT 1
                ) m
                WHERE m.value <> i.value
            ), replaced AS (
                INSERT INTO {revision} (organization_id, measurement_id, value, source, ingested_at, replaced_at)
                SELECT organization_id, id, value, source, ingested_at, %(now)s FROM stored
            )
            UPDATE {measurement} m SET value = stored.new_value, source = %(source)s, ingested_at = %(now)s
            FROM stored WHERE m.id = stored.id
            """,
            params,
        )


def _upsert_portable(org: Organization, rows: list, source: str, now: datetime) -> None:
    """The same on SQLite (the local default), through the ORM."""
    kpi_ids = sorted({kpi_id for kpi_id, _, _ in rows})
    list(Kpi.objects.filter(organization=org, pk__in=kpi_ids).order_by("pk").select_for_update().values_list("pk"))
    for start in range(0, len(rows), PORTABLE_CHUNK):
        chunk = {(kpi_id, at): value for kpi_id, at, value in rows[start : start + PORTABLE_CHUNK]}
        stored = {
            (m.kpi_id, m.at): m
            for m in Measurement.objects.filter(kpi_id__in={k for k, _ in chunk}, at__in={at for _, at in chunk})
        }
        replaced = [m for key, m in stored.items() if key in chunk and m.value != chunk[key]]
        MeasurementRevision.objects.bulk_create(
            MeasurementRevision(
                organization=org,
                measurement=m,
                value=m.value,
                source=m.source,
                ingested_at=m.ingested_at,
                replaced_at=now,
            )
            for m in replaced
        )
        Measurement.objects.bulk_create(
            [
                Measurement(organization=org, kpi_id=kpi_id, at=at, value=value, source=source, ingested_at=now)
                for (kpi_id, at), value in chunk.items()
                if (kpi_id, at) not in stored or stored[(kpi_id, at)].value != value
            ],
            update_conflicts=True,
            unique_fields=["kpi", "at"],
            update_fields=["value", "source", "ingested_at"],
        )
    newest: dict[int, datetime] = {}
    for kpi_id, at, _ in rows:
        newest[kpi_id] = max(at, newest.get(kpi_id, at))
    kpis = list(Kpi.objects.filter(pk__in=newest).only("pk", "last_measured_at"))
    for kpi in kpis:
        kpi.last_measured_at = max(filter(None, [kpi.last_measured_at, newest[kpi.pk]]))
    Kpi.objects.bulk_update(kpis, ["last_measured_at"])
    KpiSchedule.objects.bulk_create(
        [KpiSchedule(kpi_id=kpi_id, organization=org, needs_evaluation=True) for kpi_id in sorted(newest)],
        update_conflicts=True,
        unique_fields=["kpi"],
        update_fields=["needs_evaluation"],
    )

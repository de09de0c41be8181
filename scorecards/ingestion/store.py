"""Measurements from every way in (API, CSV, pulls): one all-or-nothing write of rows a Checker accepted
(scorecards.ingestion.checker)."""

from __future__ import annotations

from datetime import datetime

from celery import current_app
from django.db import connection, transaction
from django.utils import timezone

from governance.models import Organization
from scorecards.charts.sparkline import WINDOW
from scorecards.models import Kpi, KpiSchedule, Measurement, MeasurementRevision

FORMULA = "formula"  # the source of a calculated KPI's values
PORTABLE_CHUNK = 500  # SQLite limits the parameters of one statement


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
        # Calculated KPIs store their own values after computing every one they feed (dependencies.formulas).
        if source != FORMULA and Kpi.objects.filter(organization=org).exclude(formula="").exists():
            kpi_ids = sorted({kpi_id for kpi_id, _, _ in rows})
            transaction.on_commit(lambda: _queue_recompute(org.pk, kpi_ids), robust=True)
    return len(rows)


def _queue_evaluation(org_id: int) -> None:
    # Without a worker the beat sweep still finds these KPIs (KpiSchedule.needs_evaluation); this only makes it sooner.
    # By name: scorecards.tasks imports this module (ScorecardsConfig.ready registers the tasks).
    current_app.tasks["scorecards.tasks.evaluate_kpis"].delay(org_id=org_id)


def _queue_recompute(org_id: int, kpi_ids: list[int]) -> None:
    # One task per delivery, whatever the number of rows: it recomputes each dependent KPI once.
    current_app.tasks["dependencies.tasks.recompute_formulas"].delay(org_id=org_id, kpi_ids=kpi_ids)


def _upsert_postgresql(org: Organization, rows: list, source: str, now: datetime) -> None:
    """The rows travel by binary COPY into a temporary table; new points go in with one insert, and only when
    some (kpi, at) was stored before does a second statement keep the old values as revisions and replace them."""
    kpi, measurement = Kpi._meta.db_table, Measurement._meta.db_table
    schedule, revision = KpiSchedule._meta.db_table, MeasurementRevision._meta.db_table
    params = {"now": now, "org": org.pk, "source": source, "window": timezone.now() - WINDOW}
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
                -- series_version tells the scorecard's kept rows (scorecards.row_cache) that their sparkline
                -- changed; points older than its window (a backfill) change none.
                UPDATE {kpi} k SET last_measured_at = GREATEST(k.last_measured_at, t.at),
                series_version = k.series_version + (t.at > %(window)s)::int
                FROM newest t
                WHERE k.id = t.kpi_id AND (k.last_measured_at IS NULL OR k.last_measured_at < t.at OR t.at > %(window)s)
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
            FROM stored WHERE m.id = stored.id AND m.at = stored.at  -- with its time, one partition's index is probed
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
    kpis = list(Kpi.objects.filter(pk__in=newest).only("pk", "last_measured_at", "series_version"))
    for kpi in kpis:
        kpi.last_measured_at = max(filter(None, [kpi.last_measured_at, newest[kpi.pk]]))
        kpi.series_version += newest[kpi.pk] > timezone.now() - WINDOW
    Kpi.objects.bulk_update(kpis, ["last_measured_at", "series_version"])
    KpiSchedule.objects.bulk_create(
        [KpiSchedule(kpi_id=kpi_id, organization=org, needs_evaluation=True) for kpi_id in sorted(newest)],
        update_conflicts=True,
        unique_fields=["kpi"],
        update_fields=["needs_evaluation"],
    )

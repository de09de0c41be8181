"""Measurements partitioned by month on PostgreSQL (docs/measurements.md); SQLite keeps a plain table.

The table is rebuilt as `PARTITION BY RANGE (at)`: one partition per month that holds points (and the months ahead
that `create_measurement_partitions` keeps ready), plus a default partition for a point outside them (before 1970,
or beyond the months made so far), which moves out when its month's partition is made. PostgreSQL requires every
unique index of a partitioned table to hold the partition key, so the primary key is (id, at) in the database
while Django keeps `id` as the model's primary key: ids still come from one identity sequence, so `id` stays unique
in practice, and a lookup by id alone probes each partition's (id, at) index. No foreign key can point at a
non-unique column, so a revision's reference to its measurement is Django's alone (as the KPI's already was).

Reversible: going back copies the rows into a plain table again. Both directions copy every row under an exclusive
lock: on a large installation, run it in a maintenance window.
"""

from django.db import migrations, models

from governance.rls import IN_SCOPE, protect_tables

TABLE, DEFAULT = "scorecards_measurement", "scorecards_measurement_default"

# Partitions are made by the owner of the table (only an owner may add one), through a function that runs as its
# owner: the workers' role, which the beat's task runs as, may not change the schema. Only the system scope's role
# may call it. Two calls at once (two beats) queue on a lock; the second finds the partition made and returns NULL.
FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION steerco_measurement_partition(month date) RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public SET steerco.system = 'on'
    AS $$
    DECLARE
        part text := '{TABLE}_' || to_char(month, 'YYYY_MM');
        lo timestamptz := date_trunc('month', month)::timestamp AT TIME ZONE 'UTC';
        hi timestamptz := (date_trunc('month', month) + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('steerco_measurement_partition'));
        IF to_regclass('public.' || quote_ident(part)) IS NOT NULL THEN
            RETURN NULL;
        END IF;
        EXECUTE format('CREATE TABLE public.%I (LIKE public.{TABLE} INCLUDING DEFAULTS)', part);
        -- Points that arrived before their month's partition waited in the default one: attaching the month
        -- fails while the default partition still holds any of its points.
        EXECUTE format(
            'WITH moved AS (DELETE FROM public.{DEFAULT} WHERE at >= $1 AND at < $2 RETURNING *) INSERT INTO public.%I SELECT * FROM moved',
            part
        ) USING lo, hi;
        EXECUTE format('ALTER TABLE public.{TABLE} ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        -- Reads through the parent follow the parent's policies; these wall in a partition queried by its name.
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('ALTER TABLE public.%I FORCE ROW LEVEL SECURITY', part);
        EXECUTE format('CREATE POLICY tenant ON public.%I USING ({IN_SCOPE}) WITH CHECK ({IN_SCOPE})', part);
        RETURN part;
    END $$;
CREATE OR REPLACE FUNCTION steerco_measurement_partitions(months_ahead int) RETURNS SETOF text
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
    SELECT made FROM generate_series(0, months_ahead) AS i,
        public.steerco_measurement_partition((date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date) AS made
    WHERE made IS NOT NULL
    $$;
REVOKE EXECUTE ON FUNCTION steerco_measurement_partition(date), steerco_measurement_partitions(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steerco_measurement_partition(date), steerco_measurement_partitions(int)
    TO steerco_sweeper;
"""
DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS steerco_measurement_partitions(int); DROP FUNCTION IF EXISTS steerco_measurement_partition(date);
"""
MONTHS_AHEAD = 3  # as settings.MEASUREMENT_PARTITIONS_AHEAD's default; the beat's task keeps it up


def rebuild(schema_editor, *, partitioned: bool) -> None:
    """Copies the rows into a new table (partitioned or plain), then gives it the old one's name and indexes."""
    old = f"{TABLE}_old"
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%(organization_id)'", [TABLE]
        )
        organization_index = cursor.fetchone()[0]
    run = lambda statement: schema_editor.execute(statement, params=None)  # noqa: E731
    run("SET LOCAL steerco.system = 'on'")  # the owner too is bound by row-level security
    run(f"ALTER TABLE {TABLE} RENAME TO {old}")
    run(
        f"CREATE TABLE {TABLE} (LIKE {old} INCLUDING DEFAULTS INCLUDING IDENTITY)"
        + (" PARTITION BY RANGE (at)" if partitioned else "")
    )
    if partitioned:
        run(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")
        for statement in [
            f"ALTER TABLE {DEFAULT} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {DEFAULT} FORCE ROW LEVEL SECURITY",
            f"CREATE POLICY tenant ON {DEFAULT} USING ({IN_SCOPE}) WITH CHECK ({IN_SCOPE})",
        ]:
            run(statement)
        run(FUNCTIONS)
        # A partition for each month that holds points, made before the copy so that none lands in the default one.
        run(
            f"SELECT steerco_measurement_partition(month::date) FROM (SELECT DISTINCT date_trunc('month', at "
            f"AT TIME ZONE 'UTC') AS month FROM {old} WHERE at >= '1970-01-01' AND at < now() + interval '10 years') m"
        )
        run(f"SELECT steerco_measurement_partitions({MONTHS_AHEAD})")
    run(f"INSERT INTO {TABLE} SELECT * FROM {old}")
    run(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), coalesce(max(id), 0) + 1, false) FROM {TABLE}")
    run(f"DROP TABLE {old}")
    if not partitioned:
        run(DROP_FUNCTIONS)
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY ({'id, at' if partitioned else 'id'})")
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT measurement_unique_per_kpi_and_time UNIQUE (kpi_id, at)")
    run(f"CREATE INDEX {organization_index} ON {TABLE} (organization_id)")


def partition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        rebuild(schema_editor, partitioned=True)
        protect_tables(schema_editor, [apps.get_model("scorecards", "Measurement")])


def unpartition(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        rebuild(schema_editor, partitioned=False)
        protect_tables(schema_editor, [apps.get_model("scorecards", "Measurement")])


class Migration(migrations.Migration):
    dependencies = [
        ("scorecards", "0015_kpi_series_version"),
    ]

    operations = [
        migrations.AlterField(
            model_name="measurementrevision",
            name="measurement",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.CASCADE,
                related_name="revisions",
                to="scorecards.measurement",
            ),
        ),
        migrations.RunPython(partition, unpartition),
    ]

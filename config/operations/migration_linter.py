"""django-migration-linter's settings for `make lint` (config/settings/local.py reads them).

The linter flags a migration that the running release's code could not live with during a rolling upgrade (a
dropped or renamed column, a new NOT NULL column without a database default). New migrations must pass; the
existing ones listed here are accepted, each with its reason. docs/operations.md has the upgrade order.
"""

# Every one of these ships in 0.1.0, Steerco's first release: no earlier release's web or workers ever ran against
# the schema before them, so no rolling upgrade passes through them. (The linter matches names only, not apps.)
FIRST_RELEASE = "in the first release: no earlier version runs against the schema before it"
ACCEPTED = {
    "0001_initial": FIRST_RELEASE,  # governance, scorecards, escalations: the tables themselves
    "0002_workstreams": FIRST_RELEASE,
    "0003_organization_default_escalation_team_escalation": FIRST_RELEASE,
    "0003_evaluation_state": FIRST_RELEASE,
    "0004_dependency_reviews": FIRST_RELEASE,
    "0004_ingestion": FIRST_RELEASE,
    "0005_security_events": FIRST_RELEASE,
    "0005_measurement_indexes": FIRST_RELEASE,
    "0006_reviews_and_decisions": FIRST_RELEASE,
    "0006_kpi_leaner_indexes": FIRST_RELEASE,
    "0007_notification_payload": FIRST_RELEASE,
    "0007_kpi_schedule": FIRST_RELEASE + " (drops the evaluation columns 0003 added, never released)",
    "0009_decision_kinds_and_self_approval": FIRST_RELEASE,
    "0011_apitoken_scopes": FIRST_RELEASE,
    # Widens a varchar and drops its fixed choices: PostgreSQL alters the column in place and the old code reads and
    # writes it as before; only SQLite, which the linter runs on, rebuilds the table.
    "0011_kinds_and_aggregations_from_registries": "a wider varchar, compatible both ways",
    # A new NOT NULL column with a database default (db_default), so the old code's inserts still work; the linter's
    # SQLite reading wants "NOT NULL DEFAULT" and misreads SQLite's "DEFAULT 0 NOT NULL".
    "0014_organization_require_two_factor": "a database default covers the previous release's inserts",
    "0012_quiet_hours_digest_teams": "a database default covers the previous release's inserts",
    "0012_calculated_kpis": "database defaults cover the previous release's inserts",
    # The same: DataSource.task_after and ImportJob.sheet have database defaults, paused_at is nullable.
    "0013_import_sheet_and_source_health": "database defaults cover the previous release's inserts",
    # Two new tables (their NOT NULL columns and unique constraint start on empty tables, which the old code never
    # reads) and review-session columns that are nullable or have a database default (db_default), as above.
    "0014_report_subscriptions_and_session_calendar": "new tables, and new columns the previous release can ignore",
    # Kpi.series_version has a database default, as above: the previous release's inserts and writes go on.
    "0015_kpi_series_version": "a database default covers the previous release's inserts",
    # Measurements partitioned by month: the same columns and the same (kpi, at) unique constraint that the previous
    # release's ON CONFLICT names, so its reads and writes work on either table; a revision's foreign key loses its
    # database constraint, which SQLite (where the linter reads it) does by rebuilding the table.
    "0016_measurement_partitions": "same columns and constraints; only a foreign key's database constraint goes",
}

OPTIONS = {
    "include_apps": ["governance", "scorecards", "dependencies", "escalations"],
    "ignore_name": sorted(ACCEPTED),
    "no_cache": True,
}

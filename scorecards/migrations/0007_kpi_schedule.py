# The evaluation sweep's writes (tests/bench/evaluation.py): the schedule moves to a narrow KpiSchedule row, so
# that an evaluation no longer takes a new entry in every index of the wide KPI table, and the KPI table keeps
# room in its pages for the rows it does rewrite, in place (migration 0006 dropped the indexes that did not pay).

import django.db.models.deletion
from django.db import migrations, models

COPY = """
INSERT INTO scorecards_kpischedule
    (kpi_id, organization_id, next_evaluation_at, needs_evaluation, evaluated_at, version)
SELECT id, organization_id, CASE WHEN archived_at IS NULL THEN next_evaluation_at END, needs_evaluation, evaluated_at,
    version
FROM scorecards_kpi
WHERE next_evaluation_at IS NOT NULL OR needs_evaluation OR evaluated_at IS NOT NULL
"""
COPY_BACK = """
UPDATE scorecards_kpi SET
    next_evaluation_at = (SELECT s.next_evaluation_at FROM scorecards_kpischedule s WHERE s.kpi_id = scorecards_kpi.id),
    needs_evaluation = COALESCE(
        (SELECT s.needs_evaluation FROM scorecards_kpischedule s WHERE s.kpi_id = scorecards_kpi.id), false
    ),
    evaluated_at = (SELECT s.evaluated_at FROM scorecards_kpischedule s WHERE s.kpi_id = scorecards_kpi.id),
    version = COALESCE((SELECT s.version FROM scorecards_kpischedule s WHERE s.kpi_id = scorecards_kpi.id), 0)
"""


def leave_room(apps, schema_editor):
    # Half of each page stays free for the new versions of its rows (a sweep rewrites most of them), which
    # PostgreSQL then writes in place without index entries. Rows written from now on follow it.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE scorecards_kpi SET (fillfactor = 50)")


def fill_up(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE scorecards_kpi RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("scorecards", "0006_kpi_leaner_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="KpiSchedule",
            fields=[
                (
                    "kpi",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="schedule",
                        serialize=False,
                        to="scorecards.kpi",
                    ),
                ),
                ("next_evaluation_at", models.DateTimeField(blank=True, null=True)),
                ("needs_evaluation", models.BooleanField(default=False)),
                ("evaluated_at", models.DateTimeField(blank=True, null=True)),
                ("version", models.PositiveIntegerField(default=0)),
                (
                    "organization",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="governance.organization",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["next_evaluation_at"], name="kpischedule_due"),
                    models.Index(
                        condition=models.Q(("needs_evaluation", True)),
                        fields=["kpi"],
                        name="kpischedule_needs_evaluation",
                    ),
                ],
            },
        ),
        migrations.RunSQL(COPY, COPY_BACK),
        migrations.RemoveIndex(model_name="kpi", name="kpi_due"),
        migrations.RemoveIndex(model_name="kpi", name="kpi_needs_evaluation"),
        migrations.RemoveField(model_name="kpi", name="evaluated_at"),
        migrations.RemoveField(model_name="kpi", name="needs_evaluation"),
        migrations.RemoveField(model_name="kpi", name="next_evaluation_at"),
        migrations.RemoveField(model_name="kpi", name="version"),
        migrations.RunPython(leave_room, fill_up),
    ]

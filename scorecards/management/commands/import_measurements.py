from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.models import Organization
from scorecards.ingestion.csv_import import format_problem, measurement_import_create, measurement_import_run
from scorecards.models import ImportJob

PRINTED = 100  # problems printed one per line; a file in the wrong format has one on every line


class Command(BaseCommand):
    help = (
        "Imports measurements from a CSV, TSV or .xlsx file (kpi,at,value): the API's checks, and nothing is stored "
        "on any error."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the organization's slug")
        parser.add_argument("--sheet", default="", help="the sheet of an .xlsx workbook (the first one if unset)")
        parser.add_argument("path", help="a CSV, TSV or .xlsx file whose first line is the header kpi,at,value")

    def handle(self, *args, org: str, path: str, sheet: str, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f'No organization "{org}".')
        try:
            content = Path(path).read_bytes()
        except OSError as e:
            raise CommandError(f"Cannot read {path}: {e.strerror}.") from None
        job = measurement_import_create(
            org=organization, actor=None, filename=Path(path).name, content=content, sheet=sheet
        )
        job = measurement_import_run(job=job)
        if job.state == ImportJob.State.DONE:
            self.stdout.write(f"Imported {job.accepted} measurements from {path}.")
            return
        for problem in job.errors[:PRINTED]:
            self.stderr.write(format_problem(problem["line"], problem["field"], problem["message"]))
        if job.error_count > PRINTED:
            self.stderr.write(f"... and {job.error_count - PRINTED} more.")
        raise CommandError(f"{path}: {job.error_count} problem(s); nothing was stored.")

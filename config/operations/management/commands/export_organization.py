from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from config.operations.organizations import export_organization
from governance.models import Organization


class Command(BaseCommand):
    help = "Writes every row of one organization (its people, KPIs, measurements, audit log ...) as JSON."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", metavar="SLUG", required=True, help="the organization's slug")
        parser.add_argument("--output", type=Path, help="the file to write (default: standard output)")

    def handle(self, *args, org: str, output: Path | None = None, **options) -> None:
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f'No organization has the slug "{org}".')
        exported = export_organization(organization)
        if output is None:
            self.stdout.write(exported)
        else:
            output.write_text(exported)
            self.stdout.write(f"Exported {organization.slug} to {output}.")

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from governance.manifest.document import dump_yaml
from governance.manifest.engine import export_manifest
from governance.models import Organization


class Command(BaseCommand):
    help = "Prints an organization's manifest (docs/manifest.md) as YAML; applying it changes nothing."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", metavar="SLUG", required=True, help="the organization's slug")

    def handle(self, *args, org: str, **options) -> None:
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f'No organization has the slug "{org}".')
        self.stdout.write(dump_yaml(export_manifest(organization)), ending="")

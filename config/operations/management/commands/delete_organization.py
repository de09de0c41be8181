from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from config.operations.organizations import delete_organization
from governance.models import Organization


class Command(BaseCommand):
    help = (
        "Deletes every row of one organization but its audit log, which the law requires be kept (docs/operations.md)."
        " Export it first (export_organization); --confirm repeats the slug."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--org", metavar="SLUG", required=True, help="the organization's slug")
        parser.add_argument("--confirm", metavar="SLUG", required=True, help="the slug again")

    def handle(self, *args, org: str, confirm: str, **options) -> None:
        if confirm != org:
            raise CommandError("--confirm must repeat the slug given to --org.")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f'No organization has the slug "{org}".')
        deleted = delete_organization(organization)
        self.stdout.write(f"Deleted {sum(deleted.values()):,} rows of {org}; its audit log is kept.")

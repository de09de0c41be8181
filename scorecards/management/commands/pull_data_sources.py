from django.core.management.base import BaseCommand, CommandError

from governance.models import Organization
from scorecards.ingestion.pulls import pull_due_sources


class Command(BaseCommand):
    help = "Pulls every data source that is due now, here and one after another (beat queues one task per source)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization's sources (slug)")

    def handle(self, *args, org=None, **options):
        org_id = None
        if org:
            org_id = Organization.objects.filter(slug=org).values_list("pk", flat=True).first()
            if org_id is None:
                raise CommandError(f'No organization "{org}".')
        result = pull_due_sources(org_id=org_id)
        self.stdout.write(
            f"Pulled {result.claimed} data source(s): {result.rows} row(s) stored, {result.failed} failed."
        )

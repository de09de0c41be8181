from django.core.management.base import BaseCommand

from escalations.management.commands.process_status_changes import org_id_of
from escalations.reporting.digests import send_digests


class Command(BaseCommand):
    help = (
        "Writes the weekly digests that are due (Mondays 08:00 in each organization's timezone, once per person and "
        "week); deliver_notifications sends their emails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        self.stdout.write(f"Wrote {send_digests(org_id=org_id_of(org))} weekly digest(s).")

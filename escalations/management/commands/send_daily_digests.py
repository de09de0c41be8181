from django.core.management.base import BaseCommand

from escalations.management.commands.process_status_changes import org_id_of
from escalations.notify.daily_digest import send_daily_digests


class Command(BaseCommand):
    help = (
        "Writes the daily digests that are due (when each organization's business hours open, once per person and "
        "day); deliver_notifications sends their emails."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        self.stdout.write(f"Wrote {send_daily_digests(org_id=org_id_of(org))} daily digest(s).")

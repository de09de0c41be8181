from django.core.management import call_command
from django.core.management.base import BaseCommand

# Every sweep, in the order data flows through them (API.md).
SWEEPS = [
    "pull_data_sources",
    "evaluate_kpis",
    "process_status_changes",
    "advance_escalations",
    "send_digests",  # before delivery, so that one tick also sends the digests' emails
    "send_daily_digests",
    "remind_manual_values",
    "deliver_notifications",
]


class Command(BaseCommand):
    help = "Runs every sweep once, in order, at the current time (what Celery beat does every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        for sweep in SWEEPS:
            call_command(sweep, *(["--org", org] if org else []), stdout=self.stdout, stderr=self.stderr)

from django.core.management import call_command
from django.core.management.base import BaseCommand

# Every sweep, in the order data flows through them (API.md). Later sweeps (status changes, escalations,
# notifications) join this list as their engines arrive.
SWEEPS = ["evaluate_kpis"]


class Command(BaseCommand):
    help = "Runs every sweep once, in order, at the current time (what Celery beat does every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        for sweep in SWEEPS:
            call_command(sweep, *(["--org", org] if org else []), stdout=self.stdout, stderr=self.stderr)

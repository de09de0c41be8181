from django.core.management.base import BaseCommand

from escalations.engine.sweeps import advance_escalations
from escalations.management.commands.process_status_changes import org_id_of


class Command(BaseCommand):
    help = "Advances every escalation that is due now, level by level (the sweep beat runs every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        counts = advance_escalations(org_id=org_id_of(org))
        self.stdout.write(f"Escalated {counts.escalated} level(s).")

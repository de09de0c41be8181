from django.core.management.base import BaseCommand

from escalations.engine.manual_values import remind_manual_values
from escalations.management.commands.process_status_changes import org_id_of


class Command(BaseCommand):
    help = (
        "Writes the tasks of manual KPIs that are due: the value of a period that ended for its updaters, a pending "
        "value for its approver (once per KPI and period, in each organization's calendar)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        self.stdout.write(f"Wrote {remind_manual_values(org_id=org_id_of(org))} manual value task(s).")

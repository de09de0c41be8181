from django.core.management.base import BaseCommand, CommandError

from governance.models import Organization
from scorecards.storage import measurements_roll_up, roll_up_due


class Command(BaseCommand):
    help = (
        "Rolls up raw measurements past each organization's retention into one point per KPI and day "
        "(the task Celery beat runs daily)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f'No organization "{org}".')
            result = {"organizations": 1, "removed": measurements_roll_up(org=organization)}
        else:
            result = roll_up_due()
        self.stdout.write(f"Rolled up {result['organizations']} organization(s): {result['removed']} point(s) removed.")

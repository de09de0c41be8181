from django.core.management.base import BaseCommand, CommandError

from governance.models import Organization
from scorecards.evaluation.sweep import evaluate_due


class Command(BaseCommand):
    help = "Evaluates every KPI that is due now (the same sweep Celery beat runs every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization's KPIs (slug)")

    def handle(self, *args, org=None, **options):
        org_id = None
        if org:
            org_id = Organization.objects.filter(slug=org).values_list("pk", flat=True).first()
            if org_id is None:
                raise CommandError(f'No organization "{org}".')
        result = evaluate_due(org_id=org_id)
        self.stdout.write(
            f"Evaluated {result.evaluated} KPI(s): {result.changed} status change(s), {result.surges} surge(s), "
            f"{result.errors} error(s)."
        )

from django.core.management.base import BaseCommand, CommandError

from escalations.engine.sweeps import process_status_changes
from governance.models import Organization


def org_id_of(slug: str | None) -> int | None:
    if not slug:
        return None
    org_id = Organization.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if org_id is None:
        raise CommandError(f'No organization "{slug}".')
    return org_id


class Command(BaseCommand):
    help = "Opens and resolves mitigation workstreams from new status changes (the sweep beat runs every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        counts = process_status_changes(org_id=org_id_of(org))
        self.stdout.write(
            f"Processed {counts.processed} status change(s): {counts.opened} workstream(s) opened, "
            f"{counts.resolved} resolved; {counts.signals} upstream signal(s), {counts.reviews} dependency review(s) "
            f"opened, {counts.throttled} throttled."
        )

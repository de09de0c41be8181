from django.conf import settings
from django.core.management.base import BaseCommand

from scorecards.storage import measurement_partitions_ensure


class Command(BaseCommand):
    help = "Makes the coming months' measurement partitions (the task Celery beat runs daily); PostgreSQL only."

    def add_arguments(self, parser):
        parser.add_argument("--months-ahead", type=int, default=settings.MEASUREMENT_PARTITIONS_AHEAD)

    def handle(self, *args, months_ahead, **options):
        made = measurement_partitions_ensure(months_ahead=months_ahead)
        self.stdout.write(f"Made {len(made)} partition(s)" + (f": {', '.join(made)}." if made else "."))

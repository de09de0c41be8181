from django.core.management.base import BaseCommand

from escalations.management.commands.process_status_changes import org_id_of
from escalations.notify.fanout import deliver_due
from escalations.notify.health import flag_failing
from escalations.notify.webhooks import deliver_webhooks


class Command(BaseCommand):
    help = "Sends the email notifications and webhook posts that are due (the sweep beat runs every minute)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="only this organization (slug)")

    def handle(self, *args, org=None, **options):
        org_id = org_id_of(org)
        self.stdout.write(f"Sent {deliver_due(org_id=org_id)} email(s).")
        self.stdout.write(f"Delivered {deliver_webhooks(org_id=org_id)} webhook post(s).")
        if failing := flag_failing(org_id=org_id):
            self.stdout.write(f"{failing} channel(s) keep failing: the admins are told (the delivery log shows them).")

from django.core.management.base import BaseCommand

from governance import tenancy
from governance.models import Organization
from governance.services.secrets import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypts every organization's secrets with the first key of SECRETS_KEYS; afterwards the other keys "
        "can be removed from the setting."
    )

    def handle(self, *args, **options):
        total = 0
        for org in Organization.objects.order_by("pk"):
            # Secrets are visible only in their own organization's scope, never in the command's system scope.
            with tenancy.scope(organization=org.pk):
                total += secrets_rotate(org=org)
        self.stdout.write(f"Re-encrypted {total} secret(s) with the first key of SECRETS_KEYS.")

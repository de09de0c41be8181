from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from governance.models import Membership, Organization, Scope
from governance.services.api_tokens import api_token_create


class Command(BaseCommand):
    help = "Creates an API token (the organization's, or with --user a member's personal one); prints it once."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization slug")
        parser.add_argument("--name", required=True, help="where the token is used")
        parser.add_argument("--user", help="email of the member a personal token acts as")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            choices=Scope.values,
            help="what an organization token may do (repeatable; default measurements:write)",
        )

    def handle(self, *args, org: str, name: str, user: str | None = None, scopes=None, **options):
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f'No organization "{org}".')
        membership = None
        if user:
            membership = Membership.objects.filter(organization=organization, user__email__iexact=user).first()
            if membership is None:
                raise CommandError(f"{user} is not a member of {organization}.")
        try:
            api_token, token = api_token_create(
                org=organization, actor=None, name=name, membership=membership, scopes=scopes
            )
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None
        if membership:
            kind = f"personal token of {membership.user.email}"
        else:
            kind = f"organization token with scopes {', '.join(api_token.scopes)}"
        self.stdout.write(f"Created {kind} {api_token.name!r} ({api_token.prefix}…). It is shown only this once:")
        self.stdout.write(token)

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

from governance.rls import runtime_role_ensure


class Command(BaseCommand):
    help = (
        "Creates (if needed) and grants a PostgreSQL role that web or worker processes connect as: no superuser, "
        "no BYPASSRLS, rows only; with --sweeps the workers' role, which may enter the system scope. Run it as the "
        "owner, after migrate."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the role's name, e.g. steerco_app")
        parser.add_argument("--password-env", metavar="VAR", help="set the role's password from this variable")
        parser.add_argument(
            "--sweeps",
            action="store_true",
            help="the workers' role: may enter the system scope the beat's sweeps need (the web role must not)",
        )

    def handle(self, *args, name: str, password_env: str | None = None, sweeps: bool = False, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Row-level security and its runtime role exist only on PostgreSQL.")
        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"{password_env} is empty or not set.")
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                runtime_role_ensure(cursor, name, sweeps=sweeps)
            except ValueError as e:
                raise CommandError(str(e)) from None
            if password:
                statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
                cursor.execute(statement)
        scope = "in every organization's scope, for the sweeps" if sweeps else "never in the system scope"
        self.stdout.write(f"{name} may read and write rows under row-level security, {scope}.")

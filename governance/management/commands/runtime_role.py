import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

from governance.rls import runtime_role_ensure


class Command(BaseCommand):
    help = (
        "Creates (if needed) and grants the PostgreSQL role that web and worker processes connect as: no superuser, "
        "no BYPASSRLS, rows only. Run it as the owner, after migrate."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the role's name, e.g. steerco_app")
        parser.add_argument("--password-env", metavar="VAR", help="set the role's password from this variable")

    def handle(self, *args, name: str, password_env: str | None = None, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Row-level security and its runtime role exist only on PostgreSQL.")
        password = None
        if password_env:
            password = os.environ.get(password_env)
            if not password:
                raise CommandError(f"{password_env} is empty or not set.")
        with transaction.atomic(), connection.cursor() as cursor:
            try:
                runtime_role_ensure(cursor, name)
            except ValueError as e:
                raise CommandError(str(e)) from None
            if password:
                statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
                cursor.execute(statement)
        self.stdout.write(f"{name} may read and write rows under row-level security.")

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

from governance.rls import runtime_grants


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
        role = sql.Identifier(name)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", [name])
            row = cursor.fetchone()
            if row is None:
                create = "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                cursor.execute(sql.SQL(create).format(role))
            elif row[0]:
                raise CommandError(f"{name} is a superuser or bypasses row-level security; choose another role.")
            if password:
                cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
            for statement in runtime_grants(role.as_string(cursor.connection)):
                cursor.execute(statement)
        self.stdout.write(f"{name} may read and write rows under row-level security.")

"""Backups that restore (docs/operations.md, "Backups"): pg_dump's custom format on PostgreSQL, SQLite's online
backup API on the embedded default.

PostgreSQL's tenant tables force row-level security even on their owner, so the dump and the restore run in the
system scope, as every manage.py command does (governance.tenancy): the `steerco.system` setting is passed to the
server with PGOPTIONS, and the owner, a member of the system role, sees and writes every organization's rows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.core.management.base import CommandError
from django.db import connection


def _postgres(program: str) -> tuple[list[str], dict[str, str]]:
    if shutil.which(program) is None:
        raise CommandError(f"{program} is not installed (Debian: apt-get install postgresql-client).")
    db = connection.settings_dict
    args = [program, "--no-password"]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [flag, str(db[key])]
    env = {**os.environ, "PGOPTIONS": "-c steerco.system=on"}
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    return args, env


def _run(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandError(f"{args[0]} failed: {result.stderr.strip()}")


def backup(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if connection.vendor == "postgresql":
        args, env = _postgres("pg_dump")
        # --enable-row-security: dump what the system scope sees (everything) instead of refusing forced policies.
        _run(
            [*args, "--format=custom", "--enable-row-security", "--file", str(path), connection.settings_dict["NAME"]],
            env,
        )
    elif connection.vendor == "sqlite":
        with _sqlite(connection.settings_dict["NAME"]) as source, sqlite3.connect(path) as target:
            source.backup(target)  # consistent while web and workers keep writing
    else:
        raise CommandError(f"No backup for the {connection.vendor} database.")


def _sqlite(name) -> sqlite3.Connection:
    """A connection of its own to the database file (or the test suite's shared in-memory database, a URI)."""
    return sqlite3.connect(name, uri=str(name).startswith("file:"))


def database_is_empty() -> bool:
    return not connection.introspection.table_names()


def restore(path: Path) -> None:
    if not path.is_file():
        raise CommandError(f"No backup at {path}.")
    if not database_is_empty():
        raise CommandError(
            f"The database {connection.settings_dict['NAME']} is not empty: restore into a new, empty database (docs/"
            "operations.md), then point DATABASE_URL at it."
        )
    if connection.vendor == "postgresql":
        connection.close()
        args, env = _postgres("pg_restore")
        _run(
            [*args, "--exit-on-error", "--single-transaction", "--dbname", connection.settings_dict["NAME"], str(path)],
            env,
        )
    elif connection.vendor == "sqlite":
        connection.close()
        with sqlite3.connect(path) as source, _sqlite(connection.settings_dict["NAME"]) as target:
            source.backup(target)
    else:
        raise CommandError(f"No restore for the {connection.vendor} database.")

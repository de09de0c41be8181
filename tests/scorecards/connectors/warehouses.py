"""Real databases for the sql connector's tests and bench: a table `daily (day date, turnover numeric)` in
PostgreSQL, MariaDB, a SQLite file and a DuckDB file, reached through the SQLAlchemy URL the connector reads."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

BACKENDS = ("postgresql", "sqlite", "duckdb", "mariadb")
# The MariaDB server and database the tests use (created when missing); a server that does not answer skips them.
MARIADB_URL = os.environ.get("MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/steerco_src")


class Unavailable(Exception):
    """The backend's server does not answer on this machine."""


@dataclass
class Warehouse:
    backend: str
    url: str  # what the source's secret holds
    table: str
    admin: sa.Engine  # a writable connection of the test's own, to set up and count

    def count(self) -> int:
        with self.admin.connect() as connection:
            return connection.execute(sa.text(f"select count(*) from {self.table}")).scalar_one()


def _mariadb_database() -> None:
    url = sa.make_url(MARIADB_URL)
    server = sa.create_engine(url.set(database=""), connect_args={"connect_timeout": 2})
    try:
        with server.connect() as connection:
            connection.exec_driver_sql(f"create database if not exists `{url.database}`")
    except sa.exc.OperationalError as e:
        raise Unavailable(f"no MariaDB server answers at {url.host}:{url.port} ({e.orig})") from None
    finally:
        server.dispose()


@contextmanager
def warehouse(
    backend: str, directory: Path, postgres_url: str | None, rows: Iterable[tuple[str, float]], *, times: bool = False
) -> Iterator[Warehouse]:
    """A fresh `daily` table with `rows` (day as ISO text, turnover) in the backend, dropped afterwards; `times`:
    its `day` column holds times, not dates."""
    name = f"daily_{uuid.uuid4().hex[:10]}"
    if backend == "postgresql":
        if postgres_url is None:
            raise Unavailable("the PostgreSQL cases run with DATABASE_URL on PostgreSQL")
        url = postgres_url
        admin_url = sa.make_url(url).set(drivername="postgresql+psycopg")
    elif backend == "mariadb":
        _mariadb_database()
        url = admin_url = MARIADB_URL
    else:
        suffix = "sqlite3" if backend == "sqlite" else "duckdb"
        url = admin_url = f"{backend}:///{directory / f'warehouse.{suffix}'}"
    # Every connection of the test's own closes when it is done: DuckDB opens a file either writable in one
    # connection or read-only in many, and the connector's is read-only.
    admin = sa.create_engine(admin_url, poolclass=NullPool)
    rows = list(rows)
    with admin.begin() as connection:
        kind = ("datetime" if backend in ("mariadb", "sqlite") else "timestamp") if times else "date"
        connection.exec_driver_sql(f"create table {name} (day {kind}, turnover numeric(12, 2))")
        if backend == "duckdb" and rows:
            # DuckDB inserts row by row from Python; it copies a file at once (the bench's 100,000 rows).
            data = directory / f"{name}.csv"
            data.write_text("".join(f"{day},{turnover}\n" for day, turnover in rows))
            connection.exec_driver_sql(f"copy {name} from '{data}' (header false)")
        elif rows:
            connection.execute(
                sa.text(f"insert into {name} (day, turnover) values (:day, :turnover)"),
                [{"day": day, "turnover": turnover} for day, turnover in rows],
            )
    try:
        yield Warehouse(backend, url, name, admin)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"drop table {name}")
        admin.dispose()

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.utils import timezone

from config.operations.backups import backup


class Command(BaseCommand):
    help = (
        "Writes a backup of the whole database: pg_dump's custom format on PostgreSQL (run it as the owner), a copy "
        "on SQLite. Restore it with manage.py restore; docs/operations.md says how often and how long to keep them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", type=Path, help="the file to write (default: var/backups/steerco-TIME.dump)")

    def handle(self, *args, output: Path | None = None, **options) -> None:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        suffix = "dump" if connection.vendor == "postgresql" else "sqlite3"
        path = output or Path(settings.VAR_DIR) / "backups" / f"steerco-{stamp}.{suffix}"
        backup(path)
        self.stdout.write(f"Backed up to {path} ({path.stat().st_size:,} bytes).")

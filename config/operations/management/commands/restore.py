from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from config.operations.backups import restore


class Command(BaseCommand):
    help = (
        "Restores a backup of manage.py backup into the configured database, which must be new and empty (create it, "
        "point DATABASE_URL at it, restore, then start web and workers on it). Runs as the owner."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="the backup file")

    def handle(self, *args, path: Path, **options) -> None:
        restore(path)
        self.stdout.write(f"Restored {path}; run manage.py migrate if this release has newer migrations.")

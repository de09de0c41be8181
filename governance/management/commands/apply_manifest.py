from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from governance.manifest.diff import render_diff
from governance.manifest.engine import apply_manifest
from governance.models import User


class Command(BaseCommand):
    help = (
        "Applies an organization manifest (docs/manifest.md) and prints the changes; invalid manifests change nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="the manifest, YAML or JSON; - reads standard input")
        parser.add_argument("--dry-run", action="store_true", help="print the changes without making them")
        parser.add_argument("--prune", action="store_true", help="archive what the manifest no longer names")
        parser.add_argument(
            "--admin", metavar="EMAIL", help="the first admin, when the manifest creates its organization"
        )

    def handle(self, *args, path: str, dry_run: bool, prune: bool, admin: str | None, **options) -> None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CommandError(f"Cannot read {path}: {e}") from None
        first_admin = None
        if admin:
            first_admin = User.objects.filter(email__iexact=admin.strip()).first()
            if first_admin is None:
                raise CommandError(f"No user has the email {admin}; the first admin must have an account.")
        result = apply_manifest(text, admin=first_admin, dry_run=dry_run, prune=prune)
        if result.errors:
            for line in result.errors.lines():
                self.stderr.write(line)
            raise CommandError(f"The manifest is invalid ({len(result.errors)} error(s)); nothing was changed.")
        self.stdout.write(render_diff(result.changes + result.skipped))
        if dry_run:
            self.stdout.write("Dry run: nothing changed.")
        elif result.changes:
            self.stdout.write(f"Applied {len(result.changes)} change(s) (manifest sha256 {result.checksum}).")

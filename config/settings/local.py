"""Local development and `make run`: the embedded default (SQLite + filesystem broker)."""

from config.operations.migration_linter import OPTIONS as MIGRATION_LINTER_OPTIONS  # noqa: F401  (`make lint`)

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, VAR_DIR, env

DEBUG = env.bool("DEBUG", default=True)
# The demo data (`seed_demo`) is for development and the tests; production settings leave it out.
INSTALLED_APPS = [*INSTALLED_APPS, "demo", "django_migration_linter"]  # the linter: `make lint`

# Serve static files straight from the source folders; no collectstatic needed outside production.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Without a mail server configured, every email becomes a file under var/mail/, one log line each, listed at
# /dev/mail/ (demo/mailbox.py): an invitation's link can be followed without reading a MIME dump in the log.
if not env.str("EMAIL_URL", default=""):
    EMAIL_BACKEND = "demo.mailbox.FileEmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"

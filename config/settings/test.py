"""The test suite: fast hashing, in-memory mail, no manifest static storage."""

from .base import *  # noqa: F403
from .base import INSTALLED_APPS, env

DEBUG = False
# The demo data (`seed_demo`) is for development and the tests; production settings leave it out.
INSTALLED_APPS = [*INSTALLED_APPS, "demo"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed; tests never store real passwords
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# A worker process of a real-worker test sends to that test's SMTP sink on loopback, the only way to count what a
# killed process sent (tests/escalations/notify/test_redelivery.py); never set outside it.
if TEST_SMTP_PORT := env.int("TEST_SMTP_PORT", default=0):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS, EMAIL_USE_SSL = "127.0.0.1", TEST_SMTP_PORT, False, False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": {"BACKEND": "django.core.files.storage.InMemoryStorage"},  # nothing left on disk
}

# Serve static files straight from the source folders; no collectstatic needed outside production.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Tests bring their own broker: Redis when CI points at it, else an in-process one for the test worker.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=600)}

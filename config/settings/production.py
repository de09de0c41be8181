"""Production: secure cookies, HSTS, and a refusal to start with the development secret."""

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import (
    API_TOKEN_KEY,
    DEFAULT_API_TOKEN_KEY,
    DEFAULT_SECRET_KEY,
    DEFAULT_SECRETS_KEY,
    INSTALLED_APPS,
    SECRET_KEY,
    SECRETS_KEYS,
    env,
)

if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("Set SECRET_KEY to a random value of 32+ characters before running in production.")
if API_TOKEN_KEY in (DEFAULT_API_TOKEN_KEY, SECRET_KEY) or len(API_TOKEN_KEY) < 32:
    raise ImproperlyConfigured("Set API_TOKEN_KEY to a random value of 32+ characters, different from SECRET_KEY.")


def _fernet_keys(keys: list[str]) -> bool:
    try:
        return bool([Fernet(key) for key in keys])
    except ValueError:
        return False


if not _fernet_keys(SECRETS_KEYS) or DEFAULT_SECRETS_KEY in SECRETS_KEYS:
    raise ImproperlyConfigured(
        "Set SECRETS_KEYS to one or more Fernet keys, comma-separated (python -c 'from cryptography.fernet import "
        "Fernet; print(Fernet.generate_key().decode())'); the development key must not encrypt production secrets."
    )

DEBUG = False
# Row-level security binds only a role without superuser and BYPASSRLS: web and workers refuse any other.
REFUSE_PRIVILEGED_DATABASE_ROLE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # TLS ends at the load balancer
# ... which appends the client's address to X-Forwarded-For: login throttling and the audit log read it there.
# Set to the number of proxies that append (a CDN in front of the balancer: 2); 0 when none does.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_SSL_HOST = env("SECURE_SSL_HOST", default=None)
SECURE_REFERRER_POLICY = "same-origin"

# The demo (`seed_demo`) only where an operator asks for it, as Docker Compose's try-it-out stack does: a real
# installation leaves the development app out.
if env.bool("DEMO_DATA", default=False):
    INSTALLED_APPS = [*INSTALLED_APPS, "demo"]

"""Organization secrets: encryption under the operator's keys, a keyed fingerprint, and who names a secret.

Values are encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under settings.SECRETS_KEYS,
through MultiFernet: the first key encrypts, every key decrypts, so an operator rotates by putting a new key
first and running `manage.py rotate_secrets`. The fingerprint is an HMAC under SECRET_KEY, so that it tells an
admin whether a value changed without letting anyone test guesses against a stored hash.

The layers above name secrets (data sources, webhooks, integrations); governance cannot import them, so each
registers a function telling which of its objects name which secret (`register_references`, from its
AppConfig.ready): the secrets page lists them, and a secret still named cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.crypto import salted_hmac

SECRETS_PAGE = "Administration → Secrets"
MAX_VALUE_LENGTH = 8192

# org -> {secret name: ["data source warehouse", ...]}
References = Callable[[object], dict[str, list[str]]]
_references: list[References] = []


class SecretMissing(LookupError):
    """A source names a secret its organization has not set (or that cannot be read with the current keys)."""

    def __init__(self, name: str, why: str = "is not set") -> None:
        super().__init__(f"Set the organization secret `{name}` ({SECRETS_PAGE}): it {why}")
        self.name, self.why = name, why


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as e:
        raise ImproperlyConfigured(
            "SECRETS_KEYS must list Fernet keys (32 url-safe base64-encoded bytes each), comma-separated."
        ) from e


def fernet() -> MultiFernet:
    # Keyed by the setting's value: a test or an operator changing SECRETS_KEYS gets a new MultiFernet.
    return _fernet(tuple(settings.SECRETS_KEYS))


def encrypt(value: str) -> bytes:
    return fernet().encrypt(value.encode())


def decrypt(ciphertext: bytes, *, name: str) -> str:
    try:
        return fernet().decrypt(bytes(ciphertext)).decode()
    except InvalidToken:
        # Encrypted under a key no longer in SECRETS_KEYS: the value is lost, and only setting it again helps.
        raise SecretMissing(name, "cannot be decrypted with the installation's keys") from None


def rotate(ciphertext: bytes) -> bytes:
    return fernet().rotate(bytes(ciphertext))


def fingerprint(value: str) -> str:
    return salted_hmac("steerco.secret.fingerprint", value, algorithm="sha256").hexdigest()[:8]


def register_references(function: References) -> None:
    if function not in _references:
        _references.append(function)


def references(org) -> dict[str, list[str]]:
    """Every secret name the organization's objects use, with what uses it (sorted)."""
    found: dict[str, list[str]] = {}
    for function in _references:
        for name, users in function(org).items():
            found.setdefault(name, []).extend(users)
    return {name: sorted(users) for name, users in found.items()}

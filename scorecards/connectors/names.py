"""The checks of what a data source's manifest entry names: organization secrets, granted environment
variables and HTTP headers. No message repeats a value: a secret pasted by mistake must not travel on in error
output."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

from governance.manifest.fields import describe
from governance.models import secret_name_validator
from governance.secrets import SECRETS_PAGE

if TYPE_CHECKING:
    from governance.manifest.fields import Entry

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SECRET_NAME = re.compile(secret_name_validator.regex.pattern)
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP token (RFC 9110)


class Names:
    """Checks the names one manifest entry gives, for the organization `slug` (whose grants apply)."""

    def __init__(self, entry: Entry, slug: str) -> None:
        self.entry = entry
        self.slug = slug

    def secret(self, path: str, name: str | None) -> str | None:
        if name and not SECRET_NAME.match(name):
            self.entry.error(path, "must name an organization secret (a-z, 0-9 and _), not hold the secret itself")
        return name

    def env(self, path: str, name: str | None) -> str | None:
        """An environment variable of the workers, readable only when the operator granted it to the organization."""
        if not name:
            return name
        if not ENV_NAME.match(name):
            self.entry.error(path, "must name an environment variable (A-Z, 0-9 and _), not hold the secret itself")
        elif f"{self.slug}:{name}" not in settings.PULL_ENV_GRANTS:
            self.entry.error(
                path,
                f"{name} is not granted to this organization by the operator (PULL_ENV_GRANTS): set the value as an "
                f"organization secret ({SECRETS_PAGE}) and name it in {path.replace('_env', '_secret')}",
            )
        return name

    def headers(self, field: str, check: Callable[[str, str], str | None]) -> dict[str, str]:
        """{header: name}: a header's value (a token, a key) comes from the secret or variable named."""
        entry = self.entry
        raw = entry.raw.get(field)
        what = "organization secrets" if field == "headers_secret" else "environment variables"
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            entry.error(field, f"must be a mapping of header names to {what}, not {describe(raw)}")
            return {}
        headers: dict[str, str] = {}
        for header, name in raw.items():
            if not isinstance(header, str) or not HEADER_NAME.match(header):
                entry.error(field, f"{str(header)[:64]!r} is not an HTTP header name")
            elif header.lower() in {h.lower() for h in headers}:
                entry.error(f"{field}.{header}", "is listed twice")
            elif not isinstance(name, str) or not name.strip():
                entry.error(f"{field}.{header}", f"must name one of the {what}, not {describe(name)}")
            else:
                headers[header] = check(f"{field}.{header}", name.strip())
        return headers

"""Sources of kind http_json: a GET of an address per pull, headers from organization secrets (or granted
environment variables), and a mapping of the JSON answer's items to (at, value)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from governance import outbound
from scorecards.connectors.base import Connector, Credential, PullError, Row, Unreadable, seconds
from scorecards.connectors.names import Names
from scorecards.models import NonFinite

if TYPE_CHECKING:
    from governance.manifest.fields import Entry


def url_field(entry: Entry) -> str | None:
    url = entry.text("url", max_length=2000)
    if not url:
        return url
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        entry.error("url", "must be an http or https address")
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        entry.error("url", "must not carry credentials; secrets never appear in a manifest")
    return url


def _dotted_path(value: str) -> None:
    if any(not part.strip() for part in value.split(".")):
        raise ValidationError("must be a dotted path to the list, like data.rows")


class HttpJsonConnector(Connector):
    """A GET of `url` per pull (`{since}` in it becomes the KPI's newest stored time), headers from organization
    secrets (`headers_secret`) or granted environment variables (`headers_env`), and a mapping per pull: the list
    at `items` (a dotted path; the root when absent) holds objects whose fields `at` and `value` are read. Pulls
    that ask for the same address share one request."""

    kind, label, page = "http_json", "HTTP JSON", "scorecards/connectors/http_json.html"
    fields = {"url": None, "headers_secret": {}, "headers_env": {}}
    required = ("url",)
    pull_fields, pull_required = ("kpi", "items", "at", "value"), ("kpi", "at", "value")
    accept = "application/json"
    # Redirects are not followed: a header meant for this host must not travel on to another one.
    follow_redirects = False

    @classmethod
    def read_config(cls, entry: Entry, names: Names) -> dict:
        return {
            "url": url_field(entry),
            "headers_secret": names.headers("headers_secret", names.secret),
            "headers_env": names.headers("headers_env", names.env),
        }

    @classmethod
    def check_config(cls, entry: Entry, data: dict) -> None:
        both = {h.lower() for h in data["headers_secret"]} & {h.lower() for h in data["headers_env"]}
        for header in sorted(both):
            entry.error(f"headers_env.{header}", "is also in headers_secret; a header has one source")

    @classmethod
    def read_pull(cls, pull: Entry) -> dict:
        return {
            "items": pull.text("items", max_length=200, validator=_dotted_path),
            "at": pull.text("at", max_length=200),
            "value": pull.text("value", max_length=200),
        }

    @classmethod
    def credentials(cls, config: dict) -> list[Credential]:
        return [
            (f"{header} header", origin, name)
            for origin in ("secret", "env")
            for header, name in sorted((config.get(f"headers_{origin}") or {}).items())
        ]

    def read_credentials(self) -> None:
        self.headers = {header: self.secret(name) for header, name in (self.config.get("headers_secret") or {}).items()}
        for header, name in (self.config.get("headers_env") or {}).items():
            self.headers[header] = self.env(name, f"the {header} header")
        self.secrets = list(self.headers.values())

    def __enter__(self) -> HttpJsonConnector:
        self.client = outbound.client(
            allow_setting="PULL_ALLOW_PRIVATE_NETWORKS",
            timeout=httpx.Timeout(
                settings.PULL_HTTP_READ_TIMEOUT.total_seconds(),
                connect=settings.PULL_CONNECT_TIMEOUT.total_seconds(),
            ),
            follow_redirects=self.follow_redirects,
            headers={"Accept": self.accept, "User-Agent": "Steerco data pull"},
        )
        self.answers: dict[str, object] = {}
        return self

    def __exit__(self, *exc_info) -> None:
        self.client.close()

    def rows(self, pull: dict, since: datetime) -> list[Row]:
        url = (self.config.get("url") or "").replace("{since}", quote(since.isoformat(), safe=""))
        if url not in self.answers:
            self.answers[url] = self._get(url)
        items = self._items(self.answers[url], pull.get("items"), pull.get("kpi"))
        self.capped(len(items))
        at, value = pull.get("at"), pull.get("value")
        return [
            (item.get(at), item.get(value)) if isinstance(item, dict) else Unreadable("is not a JSON object")
            for item in items
        ]

    def _get(self, url: str) -> object:
        body, kind = self.download(url)
        host = urlsplit(url).hostname or "the server"
        try:
            # NaN and Infinity are not JSON; parsed as NonFinite, the Checker rejects them row by row.
            return json.loads(body, parse_constant=NonFinite)
        except (ValueError, UnicodeDecodeError):
            raise PullError(f"the answer from {host} is not JSON ({kind})") from None

    def download(self, url: str) -> tuple[bytes, str]:
        """The answer's body and content type, within the size limit and the read deadline."""
        host = urlsplit(url).hostname or "the server"
        limit = settings.PULL_HTTP_MAX_BYTES
        # The read timeout holds for each read; this deadline bounds a server that trickles its answer.
        deadline = time.monotonic() + settings.PULL_HTTP_READ_TIMEOUT.total_seconds()
        body = bytearray()
        with self.failing(f"could not get an answer from {host}"):
            try:
                with self.client.stream("GET", url, headers=self.headers) as response:
                    if not response.is_success:
                        raise PullError(f"{host} answered HTTP {response.status_code} {response.reason_phrase}".strip())
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise PullError(f"the answer from {host} is larger than the limit of {limit:,} bytes")
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise PullError(f"the answer from {host} is larger than the limit of {limit:,} bytes")
                        if time.monotonic() > deadline:
                            raise httpx.ReadTimeout("the answer kept arriving")
                    kind = response.headers.get("content-type", "no content type").split(";")[0]
            except httpx.TimeoutException:
                limit_text = seconds(settings.PULL_HTTP_READ_TIMEOUT)
                raise PullError(f"{host} did not answer within {limit_text}") from None
        return bytes(body), kind

    def _items(self, document: object, path: str | None, kpi: object) -> list:
        node = document
        for part in path.split(".") if path else []:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise PullError(f'the answer for {kpi} has no "{path}" (nothing at "{part}")')
        if not isinstance(node, list):
            where = f'"{path}"' if path else "its top level"
            raise PullError(f"the answer for {kpi} holds no list at {where}")
        return node

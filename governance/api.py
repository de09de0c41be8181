"""The API's tenancy: bearer tokens, the per-token rate limit, the manifest and the organization's secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.security import HttpBearer
from ninja.throttling import SimpleRateThrottle
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from governance.access import get_secret_or_404
from governance.manifest import apply_manifest, export_manifest
from governance.models import ApiToken, Secret, single_line_validator
from governance.secrets import MAX_VALUE_LENGTH
from governance.security import client_ip
from governance.selectors import secret_list
from governance.services import api_token_authenticate, secret_delete, secret_set


def _no_nul(text: str) -> str:
    if "\x00" in text:  # PostgreSQL text cannot hold it: a lookup or a save would fail with a server error
        raise PydanticCustomError("nul_character", "must not contain a NUL character")
    return text


def _one_line(text: str) -> str:
    try:
        single_line_validator(text)
    except ValidationError as error:
        raise PydanticCustomError(
            "control_character", "must be one line, without line breaks, tabs or other control characters"
        ) from error
    return text


# Every string an API body brings in: stored, or looked up; Line for one-line text (names, keys, choices, emails).
Text = Annotated[str, AfterValidator(_no_nul)]
Line = Annotated[str, AfterValidator(_one_line)]


class Error(Schema):
    path: str
    message: str


class Errors(Schema):
    errors: list[Error]


class ApiError(Exception):
    """An answer in API.md's error shape: `{"errors": [{"path": ..., "message": ...}]}`."""

    def __init__(self, status: int, errors: list[dict]):
        super().__init__(errors)
        self.status, self.errors = status, errors


class TokenAuth(HttpBearer):
    """`Authorization: Bearer stc_...`; the token's organization becomes the request's, as the middleware does."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = api_token_authenticate(token, ip=client_ip(request), path=request.path)
        if api_token is not None:
            request.org, request.membership = api_token.organization, api_token.membership
        return api_token


class TokenThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT requests per token (a sliding window in the cache); beyond it 429 with Retry-After."""

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def allow_request(self, request: HttpRequest) -> bool:
        self.num_requests, self.duration = self.parse_rate(self.get_rate())  # the setting as it is now
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str:
        return f"api-throttle-{request.auth.pk}"


def require_admin_or_org_token(request: HttpRequest, what: str) -> None:
    """Organization tokens do anything in their organization; a personal token only what its admin may."""
    membership = request.auth.membership
    if membership is not None and not membership.is_admin:
        message = f"Only an organization token or an admin's personal token may {what}."
        raise ApiError(403, [{"path": "Authorization", "message": message}])


router = Router(tags=["manifest"])

MANIFEST_BODY = {
    "required": True,
    "description": "The manifest (docs/manifest.md), as JSON or, with Content-Type application/yaml, as YAML.",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/yaml": {"schema": {"type": "string"}},
    },
}


@router.get("/manifest", summary="Export the organization as a manifest")
def manifest_export(request: HttpRequest) -> dict:
    require_admin_or_org_token(request, "read the manifest")
    return export_manifest(request.org)


@router.put(
    "/manifest", summary="Apply a manifest (dry_run=true: only the diff)", openapi_extra={"requestBody": MANIFEST_BODY}
)
def manifest_apply(request: HttpRequest, dry_run: bool = False, prune: bool = False):
    require_admin_or_org_token(request, "apply a manifest")
    body = request.body  # YAML is a superset of JSON: the parser reads both
    membership = request.auth.membership
    result = apply_manifest(
        body, actor=membership.user if membership else None, org=request.org, dry_run=dry_run, prune=prune
    )
    if not result.ok:
        raise ApiError(422, result.errors.as_list())
    return {
        "dry_run": dry_run,
        "checksum": result.checksum,
        "changes": [change.as_dict() for change in result.changes],
    }


# --- organization secrets: written here, never read back ---------------------------------------


class SecretOut(Schema):
    name: str
    fingerprint: str = Field(description="A keyed fingerprint of the value: it changes when the value does")
    set_by: str | None = Field(description="Email of who set it; null for an organization token")
    set_at: datetime
    used_by: list[str] = Field(description='What names it, e.g. "data source warehouse"')


class SecretIn(Schema):
    value: Text = Field(min_length=1, max_length=MAX_VALUE_LENGTH, description="Write-only: never returned")


def _secret_out(secret: Secret, used_by: list[str]) -> dict:
    return {
        "name": secret.name,
        "fingerprint": secret.fingerprint,
        "set_by": secret.set_by.email if secret.set_by else None,
        "set_at": secret.set_at,
        "used_by": used_by,
    }


@router.get(
    "/secrets", response={200: list[SecretOut], 403: Errors}, tags=["secrets"], summary="The secrets, without values"
)
def secrets_list(request: HttpRequest):
    require_admin_or_org_token(request, "list the secrets")
    return [_secret_out(row.secret, row.used_by) for row in secret_list(org=request.org)]


@router.put(
    "/secrets/{name}",
    response={200: SecretOut, 403: Errors, 422: Errors},
    tags=["secrets"],
    summary="Set or replace a secret (the value is write-only)",
)
def secrets_put(request: HttpRequest, name: str, body: SecretIn):
    require_admin_or_org_token(request, "set a secret")
    membership = request.auth.membership
    secret = secret_set(org=request.org, actor=membership.user if membership else None, name=name, value=body.value)
    used_by = next((row.used_by for row in secret_list(org=request.org) if row.secret.pk == secret.pk), [])
    return _secret_out(secret, used_by)


@router.delete(
    "/secrets/{name}",
    response={204: None, 403: Errors, 404: Errors, 409: Errors},
    tags=["secrets"],
    summary="Delete a secret nothing uses",
)
def secrets_delete(request: HttpRequest, name: str):
    require_admin_or_org_token(request, "delete a secret")
    secret = get_secret_or_404(request.org, name)
    membership = request.auth.membership
    try:
        secret_delete(secret=secret, actor=membership.user if membership else None)
    except ValidationError as e:
        raise ApiError(409, [{"path": "name", "message": message} for message in e.messages]) from None
    return Status(204, None)

"""The API's tenancy: bearer tokens, the per-token rate limit, and the manifest endpoints."""

from __future__ import annotations

from typing import Annotated

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router
from ninja.security import HttpBearer
from ninja.throttling import SimpleRateThrottle
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from governance.manifest import apply_manifest, export_manifest
from governance.models import ApiToken, single_line_validator
from governance.security import client_ip
from governance.services import api_token_authenticate


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
    "description": "The manifest (MANIFEST.md), as JSON or, with Content-Type application/yaml, as YAML.",
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

"""The API's tenancy: bearer tokens, the per-token rate limit, the manifest and the organization's secrets."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial, wraps
from typing import Annotated

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Router, Schema, Status
from ninja.security import HttpBearer
from ninja.throttling import SimpleRateThrottle
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from governance.access import get_secret_or_404
from governance.manifest.context import Change
from governance.manifest.engine import DOCUMENT_ORDER, VERSION, apply_manifest, export_manifest
from governance.models import ApiToken, Scope, Secret, secret_name_validator, single_line_validator, slug_validator
from governance.secrets import MAX_VALUE_LENGTH
from governance.security import client_ip
from governance.selectors import secret_list
from governance.services.api_tokens import api_token_authenticate
from governance.services.secrets import secret_delete, secret_set

# PostgreSQL text cannot hold a NUL character: a lookup or a save with one would fail with a server error.
NUL_FREE = r"^[^\x00]*$"
NUL_MESSAGE = "must not contain a NUL character"


def _no_nul(text: str) -> str:
    if "\x00" in text:
        raise PydanticCustomError("nul_character", NUL_MESSAGE)
    return text


def _one_line(text: str) -> str:
    try:
        single_line_validator(text)
    except ValidationError as error:
        raise PydanticCustomError(
            "control_character", "must be one line, without line breaks, tabs or other control characters"
        ) from error
    return text


# Every string an API request brings in (body, query or path): stored, or looked up; Line for one-line text (names,
# keys, choices, emails). The pattern tells clients.
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NUL_FREE})]
# The JSON Schema form of governance.models.CONTROL_CHARACTERS' complement.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
Line = Annotated[str, AfterValidator(_one_line), Field(json_schema_extra={"pattern": ONE_LINE})]
MAX_LISTED_ERRORS = 100  # an error body lists this many problems and counts the rest

# A time in a query is ISO 8601 with its zone; pydantic alone would also take a number as seconds since 1970.
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?", re.IGNORECASE)


def _iso_text(value):
    if not isinstance(value, str) or not ISO_TIME.fullmatch(value):
        raise PydanticCustomError("iso_time", "must be an ISO 8601 time with a zone, e.g. 2026-11-29T08:00:00+01:00")
    return value


def _zoned(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise PydanticCustomError("naive_time", "has no zone; add one, e.g. +01:00 or Z")
    return moment


Moment = Annotated[datetime, BeforeValidator(_iso_text), AfterValidator(_zoned)]


class Error(Schema):
    path: str = Field(description='where: a field ("measurements[3].at"), a parameter, "body" or "Authorization"')
    message: str


class Errors(Schema):
    errors: list[Error] = Field(max_length=MAX_LISTED_ERRORS)
    total: int | None = Field(
        None, description=f"how many problems there were, when more than the {MAX_LISTED_ERRORS} listed"
    )


class ApiError(Exception):
    """An answer in API.md's error shape: `{"errors": [{"path": ..., "message": ...}]}`."""

    def __init__(self, status: int, errors: list[dict]):
        super().__init__(errors)
        self.status, self.errors = status, errors


def refuse_unknown_parameters(run: Callable) -> Callable:
    """Wraps an operation (ninja's view mode): a query parameter it does not declare, or one it declares given
    twice, answers 422, so that a misspelt filter (`?stat=open`) is not silently ignored."""
    operation = run.__self__
    known = {
        field.alias or name
        for model in operation.models
        if model.__ninja_param_source__ == "query"
        for name, field in model.model_fields.items()
    }

    @wraps(run)
    def checked(request: HttpRequest, *args, **kwargs):
        errors = [
            {"path": name, "message": "is not a parameter of this operation" if name not in known else "is given twice"}
            for name, values in request.GET.lists()
            if name not in known or len(values) > 1
        ]
        if errors:
            return operation.api.on_exception(request, ApiError(422, errors))
        return run(request, *args, **kwargs)

    return checked


PERSONAL = "personal"  # what an endpoint that acts for a person needs instead of a scope: a personal token


def forbidden(message: str) -> ApiError:
    return ApiError(403, [{"path": "Authorization", "message": message}])


class TokenAuth(HttpBearer):
    """`Authorization: Bearer stc_...`; the token's organization becomes the request's, as the middleware does.

    Every endpoint declares what it needs: a scope, which an organization token must carry (403 naming it), or
    PERSONAL. A personal token acts as its member: scopes do not apply to it, the member's permissions do (every
    member reads; sending measurements and manifests is an admin's; the services check the rest)."""

    def __init__(self, needs: str):
        super().__init__()
        self.needs = needs

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = api_token_authenticate(token, ip=client_ip(request), path=request.path)
        if api_token is None:
            return None
        request.org, request.membership = api_token.organization, api_token.membership
        if self.needs == PERSONAL:
            if not api_token.is_personal:
                raise forbidden(
                    "acting for a person needs that member's personal token (create_api_token --user EMAIL)"
                )
        elif not api_token.is_personal:
            if not api_token.has_scope(self.needs):
                raise forbidden(f'needs the scope "{self.needs}", which this token lacks ({_scopes(api_token)})')
        elif self.needs != Scope.READ and not api_token.membership.is_admin:
            raise forbidden(f"{_ADMIN_ONLY[self.needs]} needs an organization token or an admin's personal token")
        return api_token


def _scopes(api_token: ApiToken) -> str:
    return f"it has {', '.join(api_token.scopes)}" if api_token.scopes else "it has none"


_ADMIN_ONLY = {
    Scope.MEASUREMENTS_WRITE: "sending measurements",
    Scope.MANIFEST_WRITE: "applying a manifest",
    Scope.ADMIN: "changing members",
}


class TokenThrottle(SimpleRateThrottle):
    """API_RATE_LIMIT requests per token and window (e.g. 600/m: each clock minute); beyond it 429 with Retry-After.

    One counter per token and window in the default cache, created with an expiry and then incremented: both are
    atomic in Redis (CACHE_URL), so every web process and machine counts against the same limit. A counter lives
    two windows, so it cannot expire between the two calls while its window lasts."""

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def allow_request(self, request: HttpRequest) -> bool:
        limit, duration = self.parse_rate(self.get_rate())  # the setting as it is now
        now = time.time()
        window = int(now // duration)
        key = f"api-throttle:{request.auth.pk}:{duration}:{window}"
        cache.add(key, 0, timeout=2 * duration)
        count = cache.incr(key)
        self.retry_after = (window + 1) * duration - now
        return count <= limit

    def wait(self) -> float:
        return self.retry_after


router = Router(tags=["manifest"])

MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["version", "organization"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": VERSION},
        "organization": {
            "type": "object",
            "required": ["slug"],
            "properties": {"slug": {"type": "string", "pattern": slug_validator.regex.pattern}},
            "description": "the token's organization (a manifest names the one it is for)",
        },
        **{name: {"type": "array", "items": {"type": "object"}} for name in DOCUMENT_ORDER[2:]},
    },
}
MANIFEST_BODY = {
    "required": True,
    "description": "The manifest (docs/manifest.md), as JSON or, with Content-Type application/yaml, as YAML. "
    "References (teams, members, KPIs) are checked against the document and the organization: an unknown one "
    "answers 422.",
    "content": {
        "application/json": {"schema": MANIFEST_SCHEMA},
        "application/yaml": {"schema": {"type": "string", "pattern": NUL_FREE}},
    },
}


@router.get("/manifest", auth=TokenAuth(Scope.READ), summary="Export the organization as a manifest")
def manifest_export(request: HttpRequest) -> dict:
    if request.auth.is_personal and not request.auth.membership.is_admin:
        raise forbidden("the manifest (members, data sources) is read with an organization token or an admin's")
    return export_manifest(request.org)


@router.put(
    "/manifest",
    auth=TokenAuth(Scope.MANIFEST_WRITE),
    summary="Apply a manifest (dry_run=true: only the diff)",
    openapi_extra={"requestBody": MANIFEST_BODY},
)
def manifest_apply(request: HttpRequest, dry_run: bool = False, prune: bool = False):
    api_token = request.auth
    actor = api_token.membership.user if api_token.is_personal else None
    result = apply_manifest(
        request.body,  # YAML is a superset of JSON: the parser reads both
        actor=actor,
        org=request.org,
        dry_run=dry_run,
        prune=prune,
        decider=actor or api_token.created_by,
        authorize=partial(_authorize_manifest, api_token),
    )
    if not result.ok:
        raise ApiError(422, result.errors.as_list())
    return {
        "dry_run": dry_run,
        "checksum": result.checksum,
        "changes": [change.as_dict() for change in result.changes],
    }


def _authorize_manifest(api_token: ApiToken, changes: list[Change]) -> None:
    """What an organization token's manifest may change beyond manifest:write: people (invitations, roles, team
    memberships) need the admin scope; an ownership transfer needs a person to record as deciding it."""
    if api_token.is_personal:
        return  # its member is an admin (TokenAuth), and decides
    if not api_token.has_scope(Scope.ADMIN) and any(change.kind == "member" for change in changes):
        raise forbidden(f'changing members needs the scope "admin", which this token lacks ({_scopes(api_token)})')
    moves = any(change.kind == "kpi" and "owner" in change.changed for change in changes)
    if moves and api_token.created_by is None:
        raise forbidden(
            "an ownership change records who decided it: this token was made by create_api_token, with no person "
            "behind it; use a token an admin created on the API tokens page, or apply_manifest"
        )


# --- organization secrets: written here, never read back ---------------------------------------


class SecretOut(Schema):
    name: str
    fingerprint: str = Field(description="A keyed fingerprint of the value: it changes when the value does")
    set_by: str | None = Field(description="Email of who set it; null for an organization token")
    set_at: datetime
    used_by: list[str] = Field(description='What names it, e.g. "data source warehouse"')


SecretName = Annotated[str, Path(pattern=secret_name_validator.regex.pattern)]


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
    "/secrets",
    auth=TokenAuth(Scope.ADMIN),
    response={200: list[SecretOut], 403: Errors},
    tags=["secrets"],
    summary="The secrets, without values",
)
def secrets_list(request: HttpRequest, response: HttpResponse):
    rows = secret_list(org=request.org)
    response["X-Total-Count"] = len(rows)  # one page: an organization keeps a handful of secrets
    return [_secret_out(row.secret, row.used_by) for row in rows]


@router.put(
    "/secrets/{name}",
    auth=TokenAuth(Scope.ADMIN),
    response={200: SecretOut, 403: Errors, 422: Errors},
    tags=["secrets"],
    summary="Set or replace a secret (the value is write-only)",
)
def secrets_put(request: HttpRequest, name: SecretName, body: SecretIn):
    membership = request.auth.membership
    secret = secret_set(org=request.org, actor=membership.user if membership else None, name=name, value=body.value)
    used_by = next((row.used_by for row in secret_list(org=request.org) if row.secret.pk == secret.pk), [])
    return _secret_out(secret, used_by)


@router.delete(
    "/secrets/{name}",
    auth=TokenAuth(Scope.ADMIN),
    response={204: None, 403: Errors, 404: Errors, 409: Errors},
    tags=["secrets"],
    summary="Delete a secret nothing uses",
)
def secrets_delete(request: HttpRequest, name: SecretName):
    secret = get_secret_or_404(request.org, name)
    membership = request.auth.membership
    try:
        secret_delete(secret=secret, actor=membership.user if membership else None)
    except ValidationError as e:
        raise ApiError(409, [{"path": "name", "message": message} for message in e.messages]) from None
    return Status(204, None)

"""The JSON API under /api/v1/ (API.md): one NinjaAPI, routers from the apps, errors in one shape."""

from __future__ import annotations

import math

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import JSONRenderer

from escalations.api import router as escalations_router
from governance.api import (
    MAX_LISTED_ERRORS,
    PERSONAL,
    ApiError,
    Errors,
    TokenAuth,
    TokenThrottle,
    refuse_unknown_parameters,
)
from governance.api import router as governance_router
from governance.models import Scope
from scorecards.api import router as scorecards_router


class FiniteJSONRenderer(JSONRenderer):
    """NaN and Infinity are not JSON: a value that is not finite (a KPI's value stored before measurements were
    bounded) is shown as null rather than breaking the client's parser."""

    def render(self, request: HttpRequest, data, *, response_status: int) -> str:
        return super().render(request, _finite(data), response_status=response_status)


def _finite(data):
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(value) for value in data]
    return data


ERRORS = {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}
# What any operation may answer besides its own responses, in the error shape.
COMMON_RESPONSES = {
    401: {
        "description": "No token, or one that is unknown, revoked or whose member was deactivated",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
        "content": ERRORS,
    },
    403: {"description": "The token lacks the scope (named in the message) or the member the permission"},
    422: {
        "description": "A parameter or the body is invalid (a NUL character, a query parameter the operation does "
        "not take or takes once, given twice): every problem by path"
    },
    429: {
        "description": "Over the token's rate limit (API_RATE_LIMIT)",
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 0}, "required": True}},
        "content": ERRORS,
    },
}
BODY_RESPONSES = {
    400: {"description": "The body is not JSON (or YAML, for the manifest), or is nested too deeply"},
    413: {"description": "The body is larger than API_MAX_BODY_BYTES"},
}
PAGE_HEADERS = {
    "X-Total-Count": {"schema": {"type": "integer", "minimum": 0}, "required": True, "description": "all items"},
    "Link": {"schema": {"type": "string"}, "description": 'the next page, as <URL>; rel="next"'},
}


class SteercoApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """ninja's document, plus what it cannot know: the scope each operation needs, the responses every
        operation can give in the error shape, and the pagination headers of lists."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        errors = Errors.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(errors.pop("$defs"), Errors=errors)
        needs = {
            (method.lower(), path): auth.needs
            for path, path_view in self._operations()
            for operation in path_view.operations
            for method in operation.methods
            for auth in operation.auth_callbacks
        }
        prefix = schema["servers"][0]["url"] if schema.get("servers") else ""
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                need = needs[method, path.removeprefix(prefix)]
                operation["security"] = [{"TokenAuth": [need]}]
                operation["description"] = (operation.get("description", "") + "\n\n" + _needs(need)).strip()
                responses = operation["responses"]
                extra = {**COMMON_RESPONSES, **(BODY_RESPONSES if "requestBody" in operation else {})}
                if "{" in path:
                    extra[404] = {"description": "No such object in the token's organization"}
                for status, response in extra.items():
                    responses.setdefault(status, {"content": ERRORS, **response})
                ok = responses.get(200, {})
                if ok.get("content", {}).get("application/json", {}).get("schema", {}).get("type") == "array":
                    ok["headers"] = PAGE_HEADERS
        return schema

    def _operations(self):
        for prefix, router in self._routers:
            for path, path_view in router.path_operations.items():
                yield "/api/v1/" + (prefix + path).lstrip("/"), path_view


def _needs(need: str) -> str:
    if need == PERSONAL:
        return "Acts for a person: needs a member's personal token (an organization token answers 403)."
    if need == Scope.READ:
        return f"Needs the scope `{need}` (organization tokens); every member's personal token may."
    return f"Needs the scope `{need}` (organization tokens), or an admin's personal token."


api = SteercoApi(
    title="Steerco API",
    version="1",
    description=(
        "KPI and OKR governance. Authenticate with `Authorization: Bearer <token>` (organization or personal "
        "token; `create_api_token` or the API tokens page). Organization tokens carry scopes "
        "(`measurements:write`, `read`, `manifest:write`, `admin`); each operation names the one it needs and "
        "answers 403 naming it when the token lacks it. A personal token acts as its member, with the member's "
        'permissions. Errors are `{"errors": [{"path", "message"}]}`, at most '
        f"{MAX_LISTED_ERRORS} of them, with `total` when there were more. "
        'Lists are JSON arrays, paginated with `?page=`; `X-Total-Count` and a `Link: rel="next"` header tell '
        "the rest."
    ),
    urls_namespace="api",
    renderer=FiniteJSONRenderer(),
    auth=TokenAuth(Scope.ADMIN),  # each operation declares what it needs; one that forgets needs the most
    throttle=[TokenThrottle()],
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_decorator(refuse_unknown_parameters, mode="view")
api.add_router("", governance_router)
api.add_router("", scorecards_router)
api.add_router("", escalations_router)


def _errors(request: HttpRequest, status: int, errors: list[dict]) -> HttpResponse:
    body: dict = {"errors": errors[:MAX_LISTED_ERRORS]}
    if len(errors) > MAX_LISTED_ERRORS:  # a 10,000-item request with every item wrong stays a small answer
        body["total"] = len(errors)
    return api.create_response(request, body, status=status)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return _errors(request, exc.status, exc.errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    message = "needs a valid, unrevoked token: Bearer <token>"
    response = _errors(request, 401, [{"path": "Authorization", "message": message}])
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return _errors(request, 422, [{"path": _path(error["loc"]), "message": error["msg"]} for error in exc.errors])


def _path(loc: tuple) -> str:
    """ninja's ("query", "page") or ("body", <parameter>, "actions", 0, "owner") as the services write paths:
    "page", "actions[0].owner"."""
    parts = loc[2:] if loc[0] == "body" else loc[1:]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or str(loc[0])


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _errors(request, exc.status_code, [{"path": "", "message": str(exc)}])


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _errors(request, 413, [{"path": "body", "message": "is too large"}])


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _errors(request, 404, [{"path": request.path, "message": "not found"}])


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _errors(request, 403, [{"path": "", "message": str(exc) or "not allowed"}])


@api.exception_handler(DjangoValidationError)
def _refused(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    """A service refused the request: its messages, by field where it named one."""
    if hasattr(exc, "error_dict"):
        errors = [
            {"path": "" if field == "__all__" else field, "message": message}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    else:
        errors = [{"path": "", "message": message} for message in exc.messages]
    return _errors(request, 422, errors)


def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other address under /api/v1/: 404 in the error shape, not the site's HTML page."""
    return _errors(request, 404, [{"path": request.path, "message": "no such endpoint; see /api/v1/docs"}])

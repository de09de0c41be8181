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
from governance.api import ApiError, TokenAuth, TokenThrottle
from governance.api import router as governance_router
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


api = NinjaAPI(
    title="Steerco API",
    version="1",
    description=(
        "KPI and OKR governance. Authenticate with `Authorization: Bearer <token>` (organization or personal "
        'token; `create_api_token` or the API tokens page). Errors are `{"errors": [{"path", "message"}]}`. '
        'Lists are JSON arrays, paginated with `?page=`; `X-Total-Count` and a `Link: rel="next"` header tell '
        "the rest."
    ),
    urls_namespace="api",
    renderer=FiniteJSONRenderer(),
    auth=TokenAuth(),
    throttle=[TokenThrottle()],
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("", governance_router)
api.add_router("", scorecards_router)
api.add_router("", escalations_router)


def _errors(request: HttpRequest, status: int, errors: list[dict]) -> HttpResponse:
    return api.create_response(request, {"errors": errors}, status=status)


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

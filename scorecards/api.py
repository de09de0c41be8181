"""API endpoints for KPIs and measurements (API.md). Every query is scoped to the token's organization."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from typing import Annotated

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Query, Router, Schema

from governance.api import ApiError, Errors, Moment, TokenAuth
from governance.models import Scope, key_validator
from scorecards import selectors
from scorecards.ingestion.checker import Checker
from scorecards.ingestion.store import measurements_store
from scorecards.models import Kpi, Measurement, NonFinite

router = Router(tags=["kpis"])

MAX_ITEMS = 10_000
KpiKey = Annotated[str, Path(pattern=key_validator.regex.pattern, description="the KPI's key")]
ITEM_FIELDS = ("kpi", "at", "value")
ITEM_KEYS = set(ITEM_FIELDS)


class Accepted(Schema):
    accepted: int = Field(description="How many measurements were stored (or already stored with the same value)")


class KpiOut(Schema):
    key: str
    name: str
    team: str
    owner: str
    unit: str
    direction: str
    status: str
    pending: str | None = Field(description="The status waiting for pending_for, or null")
    status_since: datetime | None
    value: float | None
    evaluated_at: datetime | None


class Target(Schema):
    value: float
    by: date | None
    baseline_value: float | None
    baseline_at: date | None


class StatusChangeOut(Schema):
    old: str
    new: str
    value: float | None
    reason: str
    changed_at: datetime


class KpiDetailOut(KpiOut):
    thresholds: dict
    target: Target | None
    reason: str
    last_measured_at: datetime | None
    upstream: list[str]
    downstream: list[str]
    status_changes: list[StatusChangeOut]


class MeasurementOut(Schema):
    at: datetime
    value: float


MEASUREMENTS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["measurements"],
                "properties": {
                    "measurements": {
                        "type": "array",
                        "maxItems": MAX_ITEMS,
                        "items": {
                            "type": "object",
                            "required": list(ITEM_FIELDS),
                            "additionalProperties": False,
                            "properties": {
                                "kpi": {
                                    "type": "string",
                                    "pattern": key_validator.regex.pattern,
                                    "description": "the key of a KPI of the token's organization (else 422)",
                                },
                                "at": {"type": "string", "format": "date-time", "description": "with a zone"},
                                "value": {"type": "number"},
                            },
                        },
                    }
                },
            }
        }
    },
}


@router.post(
    "/measurements",
    auth=TokenAuth(Scope.MEASUREMENTS_WRITE),
    response={200: Accepted, 400: Errors, 413: Errors, 422: Errors},
    summary="Send measurements (atomic: one bad item rejects the request, nothing is stored)",
    openapi_extra={"requestBody": MEASUREMENTS_BODY},
)
def measurements_create(request: HttpRequest):
    items = _measurement_items(request)
    checker = Checker(request.org)
    checker.resolve(item.get("kpi") for item in items if isinstance(item, dict))
    for index, item in enumerate(items):
        if type(item) is dict and item.keys() == ITEM_KEYS:  # the usual case, checked first for speed
            checker.add(index, item["kpi"], item["at"], item["value"])
            continue
        if not isinstance(item, dict):
            checker.problem(index, "", "must be an object with kpi, at and value")
            continue
        for name in getattr(item, "repeated", ()):
            checker.problem(index, name, "is given more than once")
        for name in ITEM_FIELDS:
            if name not in item:
                checker.problem(index, name, "is required")
        for name in item.keys() - ITEM_KEYS:
            checker.problem(index, name, "is not a field of a measurement")
    if not checker.ok:
        raise ApiError(
            422,
            [
                {"path": f"measurements[{p.where}]" + (f".{p.field}" if p.field else ""), "message": p.message}
                for p in checker.problems
            ],
        )
    return {"accepted": measurements_store(org=request.org, rows=checker.rows, source="api")}


class Repeated(dict):
    """A JSON object that gave a key more than once: parsers keep one of the values (Python's the last), so which
    one the sender meant is anyone's guess; the request is refused instead, naming the key."""

    repeated: list[str]


def _object(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    obj = Repeated(obj)
    obj.repeated = sorted(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
    return obj


def _measurement_items(request: HttpRequest) -> list:
    body = request.body  # Django refuses a declared length over DATA_UPLOAD_MAX_MEMORY_SIZE (413 in config.api)
    if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise ApiError(413, [{"path": "body", "message": "is too large"}])
    try:
        # NaN and Infinity are not JSON, but Python's parser takes them: they become per-item errors.
        document = json.loads(body, parse_constant=NonFinite, object_pairs_hook=_object)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, [{"path": "body", "message": f"is not valid JSON ({error})"}]) from None
    except RecursionError:
        raise ApiError(400, [{"path": "body", "message": "is nested too deeply"}]) from None
    if isinstance(document, Repeated):
        raise ApiError(422, [{"path": key, "message": "is given more than once"} for key in document.repeated])
    items = document.get("measurements") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ApiError(422, [{"path": "measurements", "message": "is required: a list of {kpi, at, value}"}])
    if len(items) > MAX_ITEMS:
        message = f"holds {len(items):,} items; send at most {MAX_ITEMS:,} per request"
        raise ApiError(422, [{"path": "measurements", "message": message}])
    return items


def page_of(response: HttpResponse, request: HttpRequest, qs: QuerySet, page: int, size: int | None = None) -> list:
    """One page of a list; the total and the next page travel in headers, so the body stays a plain array."""
    paginator = Paginator(qs, size or settings.API_PAGE_SIZE)
    response["X-Total-Count"] = str(paginator.count)
    if page > paginator.num_pages:
        return []
    current = paginator.page(page)
    if current.has_next():
        query = request.GET.copy()
        query["page"] = current.next_page_number()
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return list(current.object_list)


def _kpi(request: HttpRequest, key: str) -> Kpi:
    kpi = selectors.kpi_list(org=request.org, viewer=request.membership).filter(key=key).first()
    if kpi is None:
        raise ApiError(404, [{"path": "key", "message": f'unknown KPI "{key}"'}])
    return kpi


def _summary(kpi: Kpi) -> dict:
    return {
        "key": kpi.key,
        "name": kpi.name,
        "team": kpi.team.key,
        "owner": kpi.owner.user.email,
        "unit": kpi.unit,
        "direction": kpi.direction,
        "status": kpi.status,
        "pending": kpi.pending_status or None,
        "status_since": kpi.status_since,
        "value": kpi.last_value,
        "evaluated_at": kpi.evaluated_at,
    }


@router.get(
    "/kpis", auth=TokenAuth(Scope.READ), response=list[KpiOut], summary="Every KPI with its status (100 per page)"
)
def kpis_list(request: HttpRequest, response: HttpResponse, page: int = Query(1, ge=1)):
    kpis = (
        selectors.kpi_list(org=request.org, viewer=request.membership).select_related("schedule").order_by("key")
    )  # evaluated_at
    return [_summary(kpi) for kpi in page_of(response, request, kpis, page)]


@router.get(
    "/kpis/{key}",
    auth=TokenAuth(Scope.READ),
    response={200: KpiDetailOut, 404: Errors},
    summary="One KPI, its rules and its history",
)
def kpi_detail(request: HttpRequest, key: KpiKey):
    kpi = _kpi(request, key)
    target = None
    if kpi.target_value is not None:
        target = {
            "value": kpi.target_value,
            "by": kpi.target_by,
            "baseline_value": kpi.baseline_value,
            "baseline_at": kpi.baseline_at,
        }
    return {
        **_summary(kpi),
        "thresholds": kpi.thresholds,
        "target": target,
        "reason": kpi.reason,
        "last_measured_at": kpi.last_measured_at,
        # The dependency graph's edges, through Kpi's reverse relations (scorecards may not import dependencies).
        "upstream": sorted(kpi.upstream_edges.values_list("upstream__key", flat=True)),
        "downstream": sorted(kpi.downstream_edges.values_list("downstream__key", flat=True)),
        "status_changes": list(
            kpi.status_changes.order_by("-changed_at").values("old", "new", "value", "reason", "changed_at")[:20]
        ),
    }


@router.get(
    "/kpis/{key}/measurements",
    auth=TokenAuth(Scope.READ),
    response={200: list[MeasurementOut], 404: Errors, 422: Errors},
    summary="A KPI's series, oldest first (1,000 per page)",
)
def kpi_measurements(
    request: HttpRequest, response: HttpResponse, key: KpiKey, since: Moment | None = None, page: int = Query(1, ge=1)
):
    kpi = _kpi(request, key)
    points = Measurement.objects.filter(kpi=kpi).order_by("at").values("at", "value")
    if since is not None:
        points = points.filter(at__gte=since)
    return page_of(response, request, points, page, settings.API_MEASUREMENTS_PAGE_SIZE)

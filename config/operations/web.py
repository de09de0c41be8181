"""The web processes' metrics: request rates and latencies per view, at /metrics.

Labels are the URL pattern's name (`scorecard_detail`, never the path with its organization slug), the method and
the status class, so no tenant's name reaches a label and the series stay few. With several gunicorn workers, set
PROMETHEUS_MULTIPROC_DIR (an empty directory per container) so that a scrape sums them all.
"""

from __future__ import annotations

import os
from time import perf_counter

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from config.operations.access import metrics_enabled, scraper_authorized

REQUESTS = Counter(
    "steerco_http_requests", "Requests answered, by view, method and status class", ["view", "method", "status"]
)
LATENCY = Histogram(
    "steerco_http_request_duration_seconds",
    "Time to answer a request, by view and method",
    ["view", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def request_metrics(get_response):
    """Middleware, first in the list so that it times everything below it."""

    def middleware(request: HttpRequest) -> HttpResponse:
        started = perf_counter()
        response = get_response(request)
        match = request.resolver_match
        view = match.view_name if match else "unresolved"
        LATENCY.labels(view, request.method).observe(perf_counter() - started)
        REQUESTS.labels(view, request.method, f"{response.status_code // 100}xx").inc()
        return response

    return middleware


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_enabled():
        raise Http404("Metrics are off: set METRICS_TOKEN.")
    if not scraper_authorized(request.headers.get("Authorization", "")):
        response = HttpResponse("A bearer token (METRICS_TOKEN) is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)

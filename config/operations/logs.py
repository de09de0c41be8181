"""Structured logs: one JSON line per request and per task, and every other log line as JSON too (LOG_FORMAT=json).

A request's line names its view (the URL pattern's name), never its path: paths hold organization slugs and, for
an invitation or a password reset link, a token. It carries the request id (django-guid, also sent back as
X-Request-ID), the organization's and the user's ids (never a name or an email), the status and the duration. A
task's line (config.operations.task_signals) names the task, its organization's id when it was queued for one, its
outcome and duration; neither its other arguments nor its return value are logged.
"""

from __future__ import annotations

import inspect
import logging
from time import perf_counter

import structlog
from django.http import HttpRequest, HttpResponse

requests = logging.getLogger("steerco.request")
tasks = logging.getLogger("steerco.task")


def request_id_field(logger, name, event: dict) -> dict:
    """django-guid's log filter calls it correlation_id; operators search for the X-Request-ID header's name."""
    if "correlation_id" in event:
        event["request_id"] = event.pop("correlation_id")
    return event


def without_request_paths(logger, name, event: dict) -> dict:
    """Django logs a failed request as "Not Found: /path" with the request object: the path may hold a slug or a
    token, so only the reason stays (the request line has the view, the status and the request id)."""
    event.pop("request", None)
    args = event.pop("positional_args", ())  # already in the message; kept apart only for this
    if event["logger"] == "django.request" and args:
        event["event"] = str(args[0])
    return event


def json_formatter() -> structlog.stdlib.ProcessorFormatter:
    """The "json" formatter of settings.LOGGING: stdlib records (Django's, Celery's, ours) rendered as JSON lines."""
    return structlog.stdlib.ProcessorFormatter(
        pass_foreign_args=True,
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            request_id_field,
            without_request_paths,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def request_log(get_response):
    """Middleware, near the top of the list: it logs what the middleware below it learned (user, organization)."""

    def middleware(request: HttpRequest) -> HttpResponse:
        started = perf_counter()
        response = get_response(request)
        user = getattr(request, "user", None)
        org = getattr(request, "org", None)
        match = request.resolver_match
        requests.info(
            "request",
            extra={
                "method": request.method,
                "view": match.view_name if match else "unresolved",
                "status": response.status_code,
                "duration_ms": round((perf_counter() - started) * 1000, 1),
                "organization_id": org.pk if org else None,
                "user_id": user.pk if user is not None and user.is_authenticated else None,
            },
        )
        return response

    return middleware


def log_task(*, task, task_id: str, state: str, seconds: float, args, kwargs) -> None:
    tasks.info(
        "task",
        extra={
            "task": task.name,
            "task_id": task_id,
            "state": state,
            "duration_ms": round(seconds * 1000, 1),
            "organization_id": _organization_id(task, args, kwargs),
        },
    )


def _organization_id(task, args, kwargs) -> int | None:
    """The org_id the task was queued with (one organization's sweep, import or pull); None for the beat's."""
    try:
        return inspect.signature(task.run).bind_partial(*args, **kwargs).arguments.get("org_id")
    except TypeError:
        return None

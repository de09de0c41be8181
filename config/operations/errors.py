"""Error reports to Sentry when SENTRY_DSN is set, with the tenants' data scrubbed.

What reaches Sentry: the exception's class, its stack (file, function, line; no local variables), the route, the
request id, and the organization's and user's ids. Not: the exception's message (it may quote a KPI's name or a
value), the URL (slugs, tokens in links), headers, cookies, bodies, query strings, emails, breadcrumbs (log lines
and SQL). The DSN is the operator's; nothing is sent without it.
"""

from __future__ import annotations

import sentry_sdk
from django_guid import get_guid
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

KEPT_REQUEST_FIELDS = {"method"}

# sentry-sdk's `data_collection` (which replaces the deprecated send_default_pii): every category the SDK collects
# on its own is off. Given at all, it collects each category it does not name, so all are named; `scrub` below
# still strips what an event carries anyway (the SDK's default scrubber does not run alongside this option).
COLLECTED = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "graphql": {"document": False, "variables": False},
    "gen_ai": {"inputs": False, "outputs": False},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}


def scrub(event: dict, hint: dict) -> dict:
    for exception in event.get("exception", {}).get("values", []):
        exception["value"] = ""
        for frame in exception.get("stacktrace", {}).get("frames", []):
            frame.pop("vars", None)
    if "logentry" in event:
        event["logentry"] = {"message": "(scrubbed)"}
    event.pop("message", None)
    event["breadcrumbs"] = {"values": []}
    event["request"] = {k: v for k, v in event.get("request", {}).items() if k in KEPT_REQUEST_FIELDS}
    event["user"] = {k: v for k, v in event.get("user", {}).items() if k == "id"}
    event.pop("extra", None)
    event.setdefault("tags", {})["request_id"] = get_guid() or ""
    return event


def init_sentry(dsn: str, *, environment: str = "production", transport=None) -> None:
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        data_collection=COLLECTED,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0,
        before_send=scrub,
        before_send_transaction=lambda event, hint: None,
        transport=transport,
    )

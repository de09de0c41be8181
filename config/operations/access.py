"""Who may scrape metrics: the bearer token of METRICS_TOKEN; unset, metrics are off (404)."""

from __future__ import annotations

import hmac

from django.conf import settings


def metrics_enabled() -> bool:
    return bool(settings.METRICS_TOKEN)


def scraper_authorized(authorization: str) -> bool:
    scheme, _, token = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.METRICS_TOKEN.encode())

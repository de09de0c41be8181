"""Metrics switched on with a scraper's token, and the workers' endpoint served on a free port."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from config.operations.server import serve

TOKEN = "scrape-" + "x" * 32


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    cache.clear()  # the sweep figures are counters in the cache


@pytest.fixture
def worker_endpoint(metrics_on, transactional_db):
    """The endpoint reads the database from its own thread: the test's rows must be committed."""
    server = serve(address="127.0.0.1", port=0)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()

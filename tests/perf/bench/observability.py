"""`make bench`: what metrics and JSON logs cost on the scorecard page, measured side by side in one run.

The page (one team's 50 KPIs, the benchmark database of tests.perf.bench.scorecard) is rendered in alternation with the
request-metrics and request-log middleware on, JSON lines written to a file at INFO as in production, and with
both off; prints the medians and their ratio (goal: under 3%).
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time

from django.conf import settings
from django.test.runner import DiscoverRunner
from django.test.utils import override_settings, setup_test_environment
from django_guid.log_filters import CorrelationId

from config.operations.logs import json_formatter
from tests.perf.bench.report import record
from tests.perf.bench.scorecard import build

ROUNDS = int(os.environ.get("OBSERVABILITY_ROUNDS", 40))
OURS = ("config.operations.web.request_metrics", "config.operations.logs.request_log")


def json_lines_to(path: str) -> logging.Handler:
    handler = logging.FileHandler(path)
    handler.setFormatter(json_formatter())
    handler.addFilter(CorrelationId())
    return handler


def main() -> None:
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    root = logging.getLogger()
    console = root.handlers[:]
    for handler in console:  # the production process's one handler is the JSON one below
        root.removeHandler(handler)
    try:
        client, url, first_team = build()
        page = f"{url}?team={first_team}"
        without = override_settings(MIDDLEWARE=[m for m in settings.MIDDLEWARE if m not in OURS])
        with tempfile.NamedTemporaryFile(suffix=".log") as log:
            handler = json_lines_to(log.name)
            timings: dict[str, list[float]] = {"on": [], "off": []}
            client.get(page)
            for _ in range(ROUNDS):
                for mode in ("on", "off"):
                    if mode == "on":
                        root.addHandler(handler)
                        root.setLevel(logging.INFO)
                    else:
                        without.enable()
                    start = time.perf_counter()
                    response = client.get(page)
                    timings[mode].append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200
                    if mode == "on":
                        root.removeHandler(handler)
                    else:
                        without.disable()
            lines = len(open(log.name).readlines())  # noqa: SIM115
        on, off = statistics.median(timings["on"]), statistics.median(timings["off"])
        print(f"metrics + JSON logs on the scorecard page (50 KPIs), median of {ROUNDS} rounds, {lines} log lines:")
        record("observability", "render with metrics + JSON logs", on, "ms")
        record("observability", "render without", off, "ms")
        ratio = on / off
        record("observability", "cost on / off", ratio, "x", goal="< 1.03", met=ratio < 1.03)
    finally:
        runner.teardown_databases(old)
        for handler in console:
            root.addHandler(handler)


if __name__ == "__main__":
    main()

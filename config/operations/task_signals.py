"""Task runs and durations, and what each sweep did, from Celery's task_prerun / task_postrun signals: a log line
per task (config.operations.logs) and the counters the metrics read.

Prefork workers run tasks in child processes and there may be many worker containers, so the figures are kept as
counters in the shared cache (CACHE_URL: Redis in production), where the collector (config.operations.collector)
reads them at scrape time. A sweep returns counts ({"evaluated": 12, ...}); each becomes a counter of items.
Keys hold task names and the sweeps' own count names only: never an organization's anything.
"""

from __future__ import annotations

import logging
import time
from time import perf_counter

from celery.signals import task_postrun, task_prerun
from django.core.cache import cache

from config.operations.logs import log_task

logger = logging.getLogger(__name__)
PREFIX = "steerco:metrics:task"
FIELDS = ("runs", "failures", "micros")  # micros: the sum of durations, in microseconds (cache counters are ints)
_started: dict[str, float] = {}


def key(task: str, field: str) -> str:
    return f"{PREFIX}:{task}:{field}"


def sweep_counts(retval) -> dict[str, int]:
    """The counts a sweep returned, one level of nesting flattened ({"emails": 2} and {"webhooks": {"sent": 1}})."""
    if not isinstance(retval, dict):
        return {}
    counts = {}
    for name, value in retval.items():
        inner = value.items() if isinstance(value, dict) else [("", value)]
        for sub, number in inner:
            if isinstance(number, int) and not isinstance(number, bool):
                counts[f"{name}_{sub}" if sub else name] = number
    return counts


def _incr(name: str, delta: int) -> None:
    try:
        cache.incr(name, delta)
    except ValueError:  # first time: the key does not exist yet
        if not cache.add(name, delta, timeout=None):
            cache.incr(name, delta)


@task_prerun.connect
def task_started(task_id: str, **kwargs) -> None:
    _started[task_id] = perf_counter()


@task_postrun.connect
def task_finished(task_id: str, task, args=(), kwargs=None, retval=None, state: str = "", **extra) -> None:
    started = _started.pop(task_id, None)
    if started is None:
        return
    seconds = perf_counter() - started
    log_task(task=task, task_id=task_id, state=state, seconds=seconds, args=args, kwargs=kwargs or {})
    try:
        record(task=task.name, seconds=seconds, succeeded=state == "SUCCESS", retval=retval)
    except Exception:
        # Metrics must never fail the work they measure; the cache being down shows in /readyz and the logs.
        logger.warning("Could not record the metrics of task %s", task.name, exc_info=True)


def record(*, task: str, seconds: float, succeeded: bool, retval) -> None:
    _incr(key(task, "runs"), 1)
    _incr(key(task, "micros"), round(seconds * 1_000_000))
    if not succeeded:
        _incr(key(task, "failures"), 1)
        return
    cache.set(key(task, "last_success"), time.time(), timeout=None)
    counts = sweep_counts(retval)
    names = cache.get(key(task, "items"), [])
    if not set(counts) <= set(names):
        cache.set(key(task, "items"), sorted(set(names) | set(counts)), timeout=None)
    for name, number in counts.items():
        _incr(key(task, f"item:{name}"), number)


def snapshot(tasks: list[str]) -> dict[str, dict]:
    """Every task's figures, in one cache round trip (two for the sweeps' item counts)."""
    names = cache.get_many([key(t, f) for t in tasks for f in (*FIELDS, "last_success", "items")])
    items = cache.get_many([key(t, f"item:{i}") for t in tasks for i in names.get(key(t, "items"), [])])
    figures = {}
    for task in tasks:
        if key(task, "runs") not in names:
            continue
        figures[task] = {
            **{field: names.get(key(task, field), 0) for field in FIELDS},
            "last_success": names.get(key(task, "last_success")),
            "items": {i: items.get(key(task, f"item:{i}"), 0) for i in names.get(key(task, "items"), [])},
        }
    return figures

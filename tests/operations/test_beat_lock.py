"""Two beats on the real Redis: only the one holding the lock sends the sweeps, and when it dies the other takes
over (config/settings/base.py, CELERY_BEAT_SCHEDULER)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from redbeat.schedulers import get_redis

from config.celery import app as celery_app
from tests.scorecards.evaluation.test_sweep_celery import _subprocess_env, needs_redis, purge_queue, wait_until

ROOT = Path(__file__).resolve().parents[2]
SWEEP_EVERY, TICK = 2, 1  # seconds: the lock lives five ticks
SWEEPS = ["scorecards.tasks.evaluate_kpis", "escalations.tasks.process_status_changes"]

pytestmark = [needs_redis, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def sent() -> Counter:
    """The task messages waiting in the queue (no worker consumes them here), by task name."""
    with celery_app.connection_for_write() as conn:
        messages = conn.default_channel.client.lrange("celery", 0, -1)
    return Counter(json.loads(m)["headers"]["task"] for m in messages)


def beat(tmp_path: Path, name: str) -> subprocess.Popen:
    env = _subprocess_env() | {"SWEEP_EVERY_SECONDS": str(SWEEP_EVERY), "BEAT_TICK_SECONDS": str(TICK)}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=WARNING"]
        + ["--schedule", str(tmp_path / f"{name}-schedule")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> str:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    return process.communicate(timeout=30)[1]


def forget_beat_state() -> None:
    """The lock and the schedule's last runs, which redbeat keeps in Redis, and what the beats sent."""
    redis = get_redis(celery_app)
    for key in redis.scan_iter(f"{celery_app.conf.redbeat_key_prefix}*"):
        redis.delete(key)
    purge_queue()


@pytest.fixture
def clean_beat_state():
    forget_beat_state()
    yield
    forget_beat_state()


def test_two_beats_send_each_sweep_once_and_the_second_takes_over_when_the_first_dies(tmp_path, clean_beat_state):
    holder = beat(tmp_path, "holder")
    standby = None
    try:
        wait_until(lambda: sent()[SWEEPS[0]], 15, "the first beat to send")
        standby = beat(tmp_path, "standby")
        before, started = sent(), time.monotonic()
        time.sleep(10)
        during, elapsed = sent() - before, time.monotonic() - started
        # Once per period, not twice: the standby sends nothing. A window holds floor or ceil of its periods' sends,
        # and the beat's tick may push one send past the window's end.
        periods = elapsed / SWEEP_EVERY
        for sweep in SWEEPS:
            assert math.floor(periods) - 1 <= during[sweep] <= math.ceil(periods) + 1, (sweep, during, elapsed)

        stop(holder, signal.SIGKILL)  # dies holding the lock, without releasing it
        killed = sent()
        # The lock expires five ticks after its last renewal; the standby asks for it every tick.
        wait_until(
            lambda: all((sent() - killed)[sweep] >= 2 for sweep in SWEEPS),
            5 * TICK + 3 * SWEEP_EVERY + 5,
            "the takeover",
        )
        assert standby.poll() is None
    finally:
        stop(holder)
        if standby:
            errors = stop(standby)
            assert "Traceback" not in errors, errors

"""`make bench`: the foresight features at scale.

1. The weekly hidden-dependency computation (dependencies.discovery) for 10,000 KPIs x 180 daily changes in 20 teams,
   29 lags (0-28 days), 50 planted lagged pairs: time and peak memory on one worker (one process, one thread of
   numpy's), and how many planted pairs it finds with the right lag. Reading the series from the database is not in
   the figure (it is one indexed range scan per organization).
2. Policy replay (escalations.policies.replay) of 1,000 real episodes of the last 90 days: the time the editor
   waits for, goal under 2 s.
"""

from __future__ import annotations

import os

# One worker: numpy's BLAS on a single thread, as a Celery worker process would get on a shared machine.
for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from datetime import timedelta  # noqa: E402

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from dependencies.discovery import discover, strongest, weekly_adjusted  # noqa: E402
from escalations.engine.timing import Level, Policy  # noqa: E402
from escalations.models import Workstream  # noqa: E402
from escalations.policies.replay import policy_replay  # noqa: E402
from governance.models import Role  # noqa: E402
from tests.factories import KpiFactory, MembershipFactory, OrganizationFactory, TeamFactory  # noqa: E402
from tests.perf.bench.report import record  # noqa: E402

KPIS, DAYS, LAGS, PLANTED = 10_000, 180, 28, 50
EPISODES = 1_000


def suggestion_job() -> None:
    rng = np.random.default_rng(7)
    changes = rng.normal(size=(KPIS, DAYS))
    teams = np.arange(KPIS) % 20
    planted = []
    for k in range(PLANTED):
        leader, follower, lag = 2 * k, 2 * k + 1001, 1 + k % LAGS
        if teams[leader] == teams[follower]:
            follower += 1
        changes[follower, lag:] = changes[leader, :-lag] + rng.normal(scale=0.8, size=DAYS - lag)
        planted.append((leader, follower, lag))
    tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    found = strongest(discover(weekly_adjusted(changes), teams, max_lag=LAGS, min_points=30), per_kpi=3)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    hits = {(f.leader, f.follower, f.lag) for f in found}
    print(f"hidden dependencies, {KPIS:,} KPIs x {DAYS} days, lags 0-{LAGS}, {PLANTED} planted pairs:")
    record("foresight", f"suggestion job, {KPIS:,} KPIs x {DAYS} days", seconds, "s")
    record("foresight", "its CPU time", cpu, "s")
    record("foresight", "its peak memory (tracemalloc)", peak / 2**20, "MiB")
    record("foresight", "process peak RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB")
    record("foresight", "planted pairs found with the right lag", sum(p in hits for p in planted), f"of {PLANTED}")
    record("foresight", "other suggestions (false discoveries)", len(hits - set(planted)), "pairs")


def replay_bench() -> None:
    now = timezone.now()
    org = OrganizationFactory(slug="bench-replay")
    lead = MembershipFactory(organization=org)
    for _ in range(3):
        MembershipFactory(organization=org, role=Role.EXECUTIVE)
    teams = [TeamFactory(organization=org, lead=lead) for _ in range(5)]
    kpis = [KpiFactory(organization=org, team=teams[i % 5]) for i in range(200)]
    policy = Policy(
        timedelta(days=2),
        timedelta(hours=4),
        1,
        (Level(("team_lead",), timedelta(days=1)), Level(("role:executive",), timedelta(hours=8), True)),
    )
    rng = np.random.default_rng(3)
    Workstream.objects.bulk_create(
        Workstream(
            organization=org,
            kpi=kpis[i % 200],
            severity="off_track",
            opened_at=now - timedelta(days=90) + timedelta(seconds=int(s)),
            resolved_at=now - timedelta(days=90) + timedelta(seconds=int(s) + int(rng.integers(3600, 20 * 86400))),
            resolution="recovered",
            policy=policy.as_json(),
            policy_key="bench",
        )
        for i, s in enumerate(sorted(rng.integers(0, 89 * 86400, EPISODES)))
    )
    draft = Policy(timedelta(days=1), timedelta(hours=4), 0, (Level(("role:executive",), timedelta(days=1)),))
    started = time.perf_counter()
    result = policy_replay(org=org, draft=draft, policy_key="bench", days=90, now=now)
    seconds = time.perf_counter() - started
    print(f"policy replay, {len(result.episodes):,} episodes of 90 days:")
    record("foresight", f"policy replay of {EPISODES:,} episodes", seconds, "s", goal="< 2 s", met=seconds < 2)


def main() -> None:
    suggestion_job()
    setup_test_environment()
    runner = DiscoverRunner(verbosity=0)
    old = runner.setup_databases()
    try:
        replay_bench()
    finally:
        runner.teardown_databases(old)


if __name__ == "__main__":
    main()

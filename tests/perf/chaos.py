"""`make chaos`: faults while web, worker and beat run, then checks that nothing was lost or done twice.

Runs its own PostgreSQL cluster and Redis server (on CHAOS_PG_PORT and CHAOS_REDIS_PORT) so that restarting
them disturbs nothing else on the machine. One organization holds BREACHING KPIs, which a client keeps feeding
values below their critical threshold through `POST /api/v1/measurements`, and BACKGROUND KPIs evaluated every
minute, so that the evaluation sweep lasts long enough to be killed in the middle. Escalation is fast: owner task
at once, the team lead after 20 s, the executives after 40 s, exhausted after 60 s. Faults, in order: kill -9
the worker while it runs a sweep (and start a new one), restart Redis (it keeps nothing: queued tasks are lost
and beat must make up for them), restart PostgreSQL. Then it waits for the escalations to finish and checks:
every measurement acknowledged with a 2xx is stored; each breaching KPI has exactly one status change, one
workstream and one task per step and recipient; every due escalation happened; every email went out once.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
VAR = ROOT / "var" / "chaos"
PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", next(Path("/usr/lib/postgresql").glob("*/bin"), "/usr/bin")))
PG_PORT = int(os.environ.get("CHAOS_PG_PORT", "5439"))
PG_OPTIONS = f"-p {PG_PORT} -k /tmp -c fsync=off -c listen_addresses=127.0.0.1"
REDIS_PORT = int(os.environ.get("CHAOS_REDIS_PORT", "6389"))
WEB_PORT = int(os.environ.get("CHAOS_WEB_PORT", "8198"))
BREACHING, BACKGROUND = 100, int(os.environ.get("CHAOS_BACKGROUND_KPIS", "20000"))
STEP = timedelta(seconds=20)  # mitigation due, then each level's wait
SETTLE_SECONDS = 240

RUNTIME_ROLE, WORKER_ROLE = "steerco_app", "steerco_worker"
ENV = {
    **os.environ,
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    # Web connects as the runtime role, worker and beat as the workers' (WORKER_ENV), which row-level security
    # binds (production refuses a superuser); migrations, the set-up and the checks as the owner (OWNER_ENV).
    "DATABASE_URL": f"postgres://{RUNTIME_ROLE}@127.0.0.1:{PG_PORT}/steerco",
    "CELERY_BROKER_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
    "SECRET_KEY": secrets.token_hex(32),
    "API_TOKEN_KEY": secrets.token_hex(32),
    "SECRETS_KEYS": Fernet.generate_key().decode(),
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "127.0.0.1",
    "SWEEP_EVERY_SECONDS": "5",
    "CELERY_VISIBILITY_TIMEOUT": "30",  # a killed worker's sweep comes back after 30 s, not 10 min
    "API_RATE_LIMIT": "1000000/m",
    "EMAIL_URL": f"filemail:///{VAR / 'mail'}",  # django-environ drops one leading slash of the path
    "LOG_LEVEL": "WARNING",
}
WORKER_ENV = ENV | {"DATABASE_URL": f"postgres://{WORKER_ROLE}@127.0.0.1:{PG_PORT}/steerco"}
OWNER_ENV = ENV | {"DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/steerco"}


def say(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


def as_postgres(*cmd: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


class Services:
    """The throwaway PostgreSQL cluster and Redis server, and the three Steerco processes."""

    def __init__(self) -> None:
        self.pgdata = VAR / "pgdata"
        self.procs: dict[str, subprocess.Popen] = {}

    def start_postgres(self) -> None:
        if not self.pgdata.exists():
            self.pgdata.mkdir(parents=True)
            if os.geteuid() == 0:
                shutil.chown(self.pgdata, "postgres", "postgres")
            subprocess.run(
                as_postgres(
                    str(PG_BIN / "initdb"), "-D", str(self.pgdata), "-A", "trust", "-U", "postgres", "--no-sync"
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.pg_ctl("start", "-w", "-o", PG_OPTIONS)

    def pg_ctl(self, *args: str) -> None:
        log = str(self.pgdata / "server.log")  # written by the postgres user
        subprocess.run(
            as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-l", log, *args),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start_redis(self) -> None:
        self.procs["redis"] = subprocess.Popen(
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("redis did not start")

    def start(self, name: str) -> None:
        bin_dir = Path(sys.executable).parent
        commands = {
            "web": [
                str(bin_dir / "gunicorn"),
                "-c",
                "python:config.gunicorn",
                "config.wsgi",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{WEB_PORT}",
            ],
            "worker": [str(bin_dir / "celery"), "-A", "config", "worker", "-c", "2", "-l", "WARNING"],
            "beat": [
                str(bin_dir / "celery"),
                "-A",
                "config",
                "beat",
                "-l",
                "WARNING",
                "-s",
                str(VAR / "celerybeat-schedule"),
            ],
        }
        log = open(VAR / f"{name}.log", "a")  # noqa: SIM115 (the process keeps it)
        self.procs[name] = subprocess.Popen(
            commands[name],
            cwd=ROOT,
            env=ENV if name == "web" else WORKER_ENV,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig) if name != "redis" else proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)
        self.pg_ctl("stop", "-m", "fast")


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=OWNER_ENV, check=True)


def build() -> dict:
    """The organization, its policy and KPIs, and an API token for the feeding client."""
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "API_TOKEN_KEY", "SECRETS_KEYS", "LOG_LEVEL"):
        os.environ[name] = OWNER_ENV[name]
    import django

    django.setup()
    from escalations.models import EscalationLevel, EscalationPolicy
    from governance.models import Role
    from governance.services.api_tokens import api_token_create
    from scorecards.models import Kpi
    from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory

    org = OrganizationFactory(slug="chaos", default_escalation="fast")
    policy = EscalationPolicy.objects.create(
        organization=org, key="fast", name="Fast", mitigation_due=STEP, ack_timeout=STEP
    )
    EscalationLevel.objects.create(organization=org, policy=policy, position=1, targets=["team_lead"], wait=STEP)
    EscalationLevel.objects.create(organization=org, policy=policy, position=2, targets=["role:executive"], wait=STEP)
    owner, lead = MembershipFactory(organization=org), MembershipFactory(organization=org)
    MembershipFactory(organization=org, role=Role.EXECUTIVE)
    team = TeamFactory(organization=org, lead=lead)
    common = dict(
        organization=org,
        team=team,
        owner=owner,
        unit="units",
        target_value=100,
        thresholds={"warning": 90, "critical": 80},
        cadence=timedelta(days=1),
        stale_after=timedelta(days=3),
        pending_for=timedelta(0),
        keep_for=timedelta(0),
    )
    Kpi.objects.bulk_create(
        [
            Kpi(key=f"breach.{i:03}", name=f"Breaching {i:03}", evaluate_every=timedelta(hours=1), **common)
            for i in range(BREACHING)
        ]
        + [
            Kpi(key=f"background.{i:05}", name=f"Background {i:05}", evaluate_every=timedelta(minutes=1), **common)
            for i in range(BACKGROUND)
        ],
        batch_size=5000,
    )
    _, token = api_token_create(org=org, actor=None, name="chaos")
    return {"token": token, "org_id": org.pk}


class Feeder(threading.Thread):
    """Posts one value under the critical threshold for every breaching KPI every second; remembers what got a 2xx."""

    def __init__(self, token: str) -> None:
        super().__init__(daemon=True)
        self.token, self.stop = token, threading.Event()
        self.acknowledged: set[tuple[str, str]] = set()
        self.refused = 0

    def post(self, http: httpx.Client, items: list[dict]) -> None:
        try:
            response = http.post(
                "/api/v1/measurements",
                json={"measurements": items},
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError:
            self.refused += 1
            return
        if response.is_success:
            self.acknowledged.update((item["kpi"], item["at"]) for item in items)
        else:
            self.refused += 1

    def seed_background(self) -> None:
        at = datetime.now(UTC).isoformat()
        items = [{"kpi": f"background.{i:05}", "at": at, "value": 95} for i in range(BACKGROUND)]
        with httpx.Client(base_url=f"http://127.0.0.1:{WEB_PORT}", timeout=60) as http:
            for start in range(0, len(items), 10_000):
                self.post(http, items[start : start + 10_000])

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{WEB_PORT}", timeout=10) as http:
            while not self.stop.wait(1):
                at = datetime.now(UTC).isoformat()
                self.post(http, [{"kpi": f"breach.{i:03}", "at": at, "value": 70} for i in range(BREACHING)])


def wait_for(what: str, condition, seconds: float) -> bool:
    deadline, error = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception as exc:  # noqa: BLE001 (a service is restarting: reconnect and ask again)
            from django.db import connection

            connection.close()
            error = exc
        time.sleep(0.2)
    say(f"gave up waiting for {what} after {seconds:.0f} s" + (f" (last error: {error})" if error else ""))
    return False


def sweep_running() -> bool:
    from django.db import connection

    with connection.cursor() as cursor:  # the evaluation sweep claims KPIs with FOR UPDATE SKIP LOCKED
        cursor.execute(
            "select count(*) from pg_stat_activity where state <> 'idle' and pid <> pg_backend_pid() "
            "and query ilike %s",
            ["%skip locked%"],
        )
        return cursor.fetchone()[0] > 0


def faults(services: Services) -> None:
    wait_for("the first evaluation sweep", sweep_running, 120)
    services.kill("worker")
    say("killed the worker (kill -9) during a sweep; starting a new one")
    services.start("worker")
    time.sleep(15)
    services.kill("redis", signal.SIGKILL)
    say("killed Redis (nothing persisted: queued tasks are gone); starting it again")
    services.start_redis()
    time.sleep(15)
    say("restarting PostgreSQL")
    services.pg_ctl("restart", "-m", "fast", "-w", "-o", PG_OPTIONS)
    time.sleep(15)


def check(feeder: Feeder, org_id: int) -> bool:
    from django.db import close_old_connections
    from django.db.models import Count

    from escalations.models import Notification, Task, Workstream
    from scorecards.models import Kpi, Measurement, StatusChange

    close_old_connections()
    breaching = Kpi.objects.filter(organization_id=org_id, key__startswith="breach.")
    results: list[tuple[bool, str]] = []

    measurements = Measurement.objects.filter(organization_id=org_id)
    stored = {(key, at.isoformat()) for key, at in measurements.values_list("kpi__key", "at")}
    missing = {(k, at) for k, at in feeder.acknowledged if (k, datetime.fromisoformat(at).isoformat()) not in stored}
    results.append(
        (
            not missing,
            f"{len(feeder.acknowledged)} measurements acknowledged with 2xx, {len(missing)} "
            f"missing ({feeder.refused} requests refused during the faults)",
        )
    )
    changes = StatusChange.objects.filter(kpi__in=breaching).values("kpi").annotate(n=Count("id"))
    results.append(
        (
            len(changes) == BREACHING and all(c["n"] == 1 for c in changes),
            f"{len(changes)} of {BREACHING} breaching KPIs changed status, each exactly once",
        )
    )
    workstreams = Workstream.objects.filter(kpi__in=breaching)
    per_kpi = workstreams.values("kpi").annotate(n=Count("id"))
    results.append(
        (
            len(per_kpi) == BREACHING and all(w["n"] == 1 for w in per_kpi),
            f"{workstreams.count()} workstreams for {BREACHING} breaching KPIs, one each",
        )
    )
    tasks = Task.objects.filter(workstream__in=workstreams)
    steps = tasks.values("workstream", "kind", "level", "escalation_pass", "assignee").annotate(n=Count("id"))
    twice = [s for s in steps if s["n"] > 1]
    results.append((not twice, f"{tasks.count()} tasks, {len(twice)} steps with more than one task for a recipient"))
    levels = set(tasks.filter(kind=Task.Kind.ESCALATION).values_list("workstream", "level").distinct())
    exhausted = workstreams.exclude(exhausted_at=None).count()
    expected_levels = {(w, lv) for w in workstreams.values_list("id", flat=True) for lv in (1, 2)}
    results.append(
        (
            exhausted == BREACHING and levels == expected_levels,
            f"every due escalation happened: {len(levels)} of {len(expected_levels)} level steps, "
            f"{exhausted} of {BREACHING} workstreams exhausted",
        )
    )
    emails = Notification.objects.filter(organization_id=org_id, channel=Notification.Channel.EMAIL)
    undelivered = emails.filter(delivered_at=None).count()
    sent = sum(len(re.findall(r"^Message-ID: ", p.read_text(), re.M)) for p in (VAR / "mail").glob("*.log"))
    results.append(
        (
            undelivered == 0 and sent >= emails.count(),
            f"{emails.count()} email notifications, {undelivered} undelivered, {sent} emails written "
            f"({sent - emails.count()} twice: email is at-least-once if a worker dies mid-send)",
        )
    )
    for ok, text in results:
        say(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in results)


def main() -> None:
    shutil.rmtree(VAR, ignore_errors=True)
    (VAR / "mail").mkdir(parents=True)
    services = Services()
    services.start_postgres()
    ok = False
    try:
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-qc", "create database steerco"],
            check=True,
        )
        services.start_redis()
        manage("migrate", "--noinput", "-v", "0")
        manage("runtime_role", RUNTIME_ROLE)
        manage("runtime_role", WORKER_ROLE, "--sweeps")
        data = build()
        say(f"{BREACHING} breaching and {BACKGROUND} background KPIs; starting web, worker and beat")
        for name in ("web", "worker", "beat"):
            services.start(name)
        wait_for("the web server", lambda: httpx.get(f"http://127.0.0.1:{WEB_PORT}/healthz").is_success, 30)
        feeder = Feeder(data["token"])
        feeder.seed_background()  # the next evaluation sweep has all of them to evaluate: a sweep to interrupt
        feeder.start()
        faults(services)
        feeder.stop.set()
        feeder.join()
        say("faults done, feeding stopped; waiting for every escalation to run out")
        from escalations.models import Workstream

        exhausted = Workstream.objects.filter(organization_id=data["org_id"], exhausted_at__isnull=False)
        wait_for("all workstreams exhausted", lambda: exhausted.count() >= BREACHING, SETTLE_SECONDS)
        time.sleep(15)  # the last notifications' delivery sweep
        ok = check(feeder, data["org_id"])
    finally:
        services.stop_all()
    say("all checks passed" if ok else "some checks FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

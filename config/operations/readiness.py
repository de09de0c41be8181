"""/readyz: may this process take traffic? The database answers, the broker accepts connections, every migration
of this release is applied, and the beat's heartbeat is recent (a worker ran it within HEARTBEAT_STALE_AFTER).

/healthz (governance.views) says only that the process is up: the liveness probe. A failed readiness check takes
the process out of the load balancer (Kubernetes) or marks the container unhealthy (Compose) without restarting it.
"""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError as BrokerError

from governance import selectors

_migrated = False  # once all of this release's migrations are applied, they stay applied: checked until then


def database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def broker() -> str:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    return "ok"


def migrations() -> str:
    global _migrated
    if not _migrated:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            return f"{len(pending)} not applied"
        _migrated = True
    return "ok"


def beat() -> str:
    return "ok" if selectors.worker_health().healthy else "stale"


CHECKS = {"database": database, "broker": broker, "migrations": migrations, "beat": beat}


def _run(check) -> str:
    try:
        return check()
    except (DatabaseError, BrokerError, OSError) as e:
        return f"down: {type(e).__name__}"  # the class, not the message: it may hold a host name or a user


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    results = {name: _run(check) for name, check in CHECKS.items()}
    ready = all(result == "ok" for result in results.values())
    return JsonResponse({"ready": ready, **results}, status=200 if ready else 503)

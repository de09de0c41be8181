import os
import sys

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("steerco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# celery-redbeat (the beat's leader lock) looks its settings up by their bare names, which the namespace hides.
app.conf.update({k.removeprefix("CELERY_").lower(): v for k, v in app.conf.items() if k.startswith("CELERY_REDBEAT_")})

import config.operations.task_signals  # noqa: E402, F401  (connects the task signals: runs, durations, sweep counts)


@worker_init.connect
@beat_init.connect
def refuse_privileged_role(**kwargs) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from governance.tenancy import refuse_privileged_role

    try:
        refuse_privileged_role(sweeps=True)
    except ImproperlyConfigured as e:
        # Celery logs and ignores what a signal handler raises; this must stop the process.
        print(f"Refusing to start: {e}", file=sys.stderr)
        raise SystemExit(1) from None


@worker_init.connect
def serve_metrics(**kwargs) -> None:
    """Steerco's gauges for Prometheus on METRICS_PORT (config.operations.server), from the worker's main process."""
    from django.conf import settings

    if settings.METRICS_PORT:
        from config.operations.server import serve

        serve(address="0.0.0.0", port=settings.METRICS_PORT)

import os
import sys

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("steerco")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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

from celery import shared_task

from governance.services.heartbeats import heartbeat_record


@shared_task
def heartbeat() -> None:
    heartbeat_record(name="worker")

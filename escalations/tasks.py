from celery import shared_task

from escalations.notifications import deliver_due
from escalations.sweeps import advance_escalations as advance
from escalations.sweeps import process_status_changes as process


@shared_task
def process_status_changes(org_id: int | None = None) -> dict:
    return vars(process(org_id=org_id))


@shared_task
def advance_escalations(org_id: int | None = None) -> dict:
    return vars(advance(org_id=org_id))


@shared_task
def deliver_notifications(org_id: int | None = None) -> int:
    return deliver_due(org_id=org_id)

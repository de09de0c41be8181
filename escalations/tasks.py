from celery import shared_task

from escalations.engine.manual_values import remind_manual_values as remind
from escalations.engine.sweeps import advance_escalations as advance
from escalations.engine.sweeps import process_status_changes as process
from escalations.notify.fanout import deliver_due, prune
from escalations.notify.webhooks import deliver_webhooks
from escalations.reporting.digests import send_digests as send_due_digests
from governance import tenancy


@shared_task
def process_status_changes(org_id: int | None = None) -> dict:
    with tenancy.for_sweep(org_id):
        counts = process(org_id=org_id)
    if counts.processed or counts.signals:
        deliver_notifications.delay(org_id)  # what it notified goes out now, not at the next beat
    return vars(counts)


@shared_task
def advance_escalations(org_id: int | None = None) -> dict:
    with tenancy.for_sweep(org_id):
        counts = advance(org_id=org_id)
    if counts.escalated:
        deliver_notifications.delay(org_id)
    return vars(counts)


@shared_task
def deliver_notifications(org_id: int | None = None) -> dict:
    # One beat entry sends both: emails, then webhook posts (each failure is recorded and retried on its own).
    with tenancy.for_sweep(org_id):
        return {"emails": deliver_due(org_id=org_id), "webhooks": deliver_webhooks(org_id=org_id)}


@shared_task
def send_digests(org_id: int | None = None) -> dict:
    # Writes the weekly digests due now; deliver_notifications sends their emails on its next beat.
    with tenancy.for_sweep(org_id):
        return {"digests": send_due_digests(org_id=org_id)}


@shared_task
def prune_notifications() -> dict:
    with tenancy.for_sweep(None):
        return prune()


@shared_task
def remind_manual_values(org_id: int | None = None) -> dict:
    # The entry and approval tasks of manual KPIs (escalations.engine.manual_values); deduplicated per period.
    with tenancy.for_sweep(org_id):
        tasks = remind(org_id=org_id)
    if tasks:
        deliver_notifications.delay(org_id)
    return {"tasks": tasks}

from celery import shared_task

from escalations.engine.manual_values import remind_manual_values as remind
from escalations.engine.sweeps import advance_escalations as advance
from escalations.engine.sweeps import process_status_changes as process
from escalations.notify.daily_digest import send_daily_digests as send_due_daily_digests
from escalations.notify.fanout import deliver_due, prune
from escalations.notify.health import flag_failing
from escalations.notify.webhooks import deliver_webhooks
from escalations.reporting.digests import send_digests as send_due_digests
from escalations.reporting.subscriptions import send_reports as send_due_reports
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
    # One beat entry sends both: emails, then webhook posts (each failure is recorded and retried on its own); then
    # a channel that keeps failing is flagged to the admins (once per failing period).
    with tenancy.for_sweep(org_id):
        counts = {"emails": deliver_due(org_id=org_id), "webhooks": deliver_webhooks(org_id=org_id)}
        counts["failing_channels"] = flag_failing(org_id=org_id)
    return counts


@shared_task
def send_daily_digests(org_id: int | None = None) -> dict:
    # Writes the daily digests due now; deliver_notifications sends their emails on its next beat.
    with tenancy.for_sweep(org_id):
        return {"daily_digests": send_due_daily_digests(org_id=org_id)}


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
def send_reports(org_id: int | None = None) -> dict:
    # The scheduled reports due now (escalations.reporting.subscriptions); a send-log row per period makes it once.
    with tenancy.for_sweep(org_id):
        return {"reports": send_due_reports(org_id=org_id)}


@shared_task
def send_session_invitation(org_id: int, session_id: int, method: str, sequence: int) -> dict:
    """A review session's calendar invitation, update or cancellation (escalations.decisions.calendar)."""
    from escalations.decisions.calendar import send_invitation
    from escalations.models import ReviewSession

    with tenancy.for_sweep(org_id):
        session = ReviewSession.objects.select_related("organization", "started_by").get(pk=session_id)
        return {"sent": send_invitation(session=session, method=method, sequence=sequence)}


@shared_task
def remind_manual_values(org_id: int | None = None) -> dict:
    # The entry and approval tasks of manual KPIs (escalations.engine.manual_values); deduplicated per period.
    with tenancy.for_sweep(org_id):
        tasks = remind(org_id=org_id)
    if tasks:
        deliver_notifications.delay(org_id)
    return {"tasks": tasks}

from celery import shared_task

from scorecards.evaluation import evaluate_due


@shared_task
def evaluate_kpis(org_id: int | None = None) -> dict:
    """Beat's evaluation sweep (or one organization's, queued when its data arrives); safe to run twice at once
    or after a redelivery (see scorecards.evaluation)."""
    return vars(evaluate_due(org_id=org_id))

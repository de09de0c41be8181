from celery import shared_task

from scorecards.evaluation import evaluate_due


@shared_task
def evaluate_kpis() -> dict:
    """Beat's evaluation sweep; safe to run twice at once or after a redelivery (see scorecards.evaluation)."""
    return vars(evaluate_due())

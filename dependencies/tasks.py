from celery import shared_task

from dependencies.formulas import formulas_recompute
from governance import tenancy
from governance.models import Organization


@shared_task
def recompute_formulas(org_id: int, kpi_ids: list[int]) -> dict:
    """Queued when data for `kpi_ids` commits (scorecards.ingestion.store): recomputes the KPIs calculated from
    them. Safe to run twice: the same values again change nothing."""
    with tenancy.scope(organization=org_id):
        org = Organization.objects.filter(pk=org_id).first()
        if org is None:
            return {}  # deleted meanwhile
        result = formulas_recompute(org=org, kpi_ids=kpi_ids)
        return {"computed": result.computed, "no_value": result.no_value}

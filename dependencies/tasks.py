from celery import shared_task

from dependencies.formulas import formulas_recompute
from dependencies.suggestions import suggestions_refresh
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


@shared_task
def suggest_dependencies() -> int:
    """The weekly run: one task per organization, so one tenant's data never meets another's and a big one does
    not hold up the rest."""
    with tenancy.for_sweep(None):
        orgs = list(Organization.objects.values_list("pk", flat=True))
    for org_id in orgs:
        suggest_dependencies_for.delay(org_id)
    return len(orgs)


@shared_task
def suggest_dependencies_for(org_id: int) -> int:
    with tenancy.for_sweep(org_id):
        return suggestions_refresh(org=Organization.objects.get(pk=org_id))

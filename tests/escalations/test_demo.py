import io

import pytest
from django.core.management import call_command

from escalations.models import MitigationAction, Task, Workstream


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        call_command("seed_demo", stdout=io.StringIO())
        yield
        call_command("flush", "--no-input", stdout=io.StringIO())


@pytest.mark.django_db
def test_the_demo_has_workstreams_in_every_state(demo):
    acme = Workstream.objects.filter(organization__slug="acme")
    resolutions = set(acme.values_list("resolution", flat=True))
    assert {"", "recovered", "accepted_risk"} <= resolutions
    assert set(acme.values_list("kind", flat=True)) >= {"mitigation", "data_freshness"}
    assert set(acme.values_list("paths__state", flat=True)) >= {"submitted", "approved", "rejected"}
    assert acme.filter(resolved_at=None, next_escalation_at__isnull=False, level__gte=1).exists()  # under way
    assert acme.exclude(exhausted_at=None).exists()
    assert MitigationAction.objects.exclude(overdue_at=None).exists()
    assert Task.objects.filter(kind="escalation", state="open").exists()
    # Every open episode belongs to a KPI that is in breach or stale now, and at most one per KPI.
    for ws in acme.filter(resolved_at=None).select_related("kpi"):
        assert ws.kpi.status in ("at_risk", "off_track", "stale")

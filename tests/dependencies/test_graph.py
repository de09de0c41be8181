from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError

from dependencies.models import Dependency
from dependencies.selectors import closure, path_between
from dependencies.services import dependency_create, dependency_delete
from governance.models import AuditEvent
from tests.factories import DependencyFactory, KpiFactory


@pytest.fixture
def chain(tenant):
    """a -> b -> c -> d, and a -> c (downstream depends on upstream)."""
    kpis = {k: KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=k) for k in "abcd"}
    for up, down in ["ab", "bc", "cd", "ac"]:
        dependency_create(actor=tenant.admin.user, upstream=kpis[up], downstream=kpis[down], kind="drives_demand")
    tenant.kpis = kpis
    return tenant


def keys(tenant, found: dict[int, int]) -> dict[str, int]:
    names = {k.pk: key for key, k in tenant.kpis.items()}
    return {names[pk]: depth for pk, depth in found.items()}


def test_closures_with_the_shortest_distance(chain):
    k = chain.kpis
    assert keys(chain, closure(org=chain.org, kpi_ids=[k["a"].pk], direction="downstream")) == {"b": 1, "c": 1, "d": 2}
    assert keys(chain, closure(org=chain.org, kpi_ids=[k["d"].pk], direction="upstream")) == {"c": 1, "b": 2, "a": 2}
    assert closure(org=chain.org, kpi_ids=[k["d"].pk], direction="downstream") == {}


def test_an_edge_closing_a_cycle_is_refused_with_the_cycle(chain):
    k = chain.kpis
    with pytest.raises(ValidationError) as error:
        dependency_create(actor=None, upstream=k["d"], downstream=k["b"], kind="blocks")
    assert error.value.message_dict["downstream"] == ["This edge would close the cycle d -> b -> c -> d."]
    with pytest.raises(ValidationError):
        dependency_create(actor=None, upstream=k["a"], downstream=k["a"], kind="blocks")
    assert Dependency.objects.count() == 4


def test_the_shortest_path(chain):
    k = chain.kpis
    assert path_between(org=chain.org, start=k["a"].pk, goal=k["d"].pk) == [k["a"].pk, k["c"].pk, k["d"].pk]
    assert path_between(org=chain.org, start=k["d"].pk, goal=k["a"].pk) is None


def test_no_edge_across_organizations_and_no_walk_into_another(chain, stranger_tenant):
    with pytest.raises(ValidationError):
        dependency_create(actor=None, upstream=chain.kpis["a"], downstream=stranger_tenant.kpi, kind="blocks")
    assert closure(org=stranger_tenant.org, kpi_ids=[chain.kpis["a"].pk], direction="downstream") == {}


def test_writes_are_audited(chain):
    dependency_delete(
        dependency=Dependency.objects.get(upstream=chain.kpis["a"], downstream=chain.kpis["c"]), actor=None
    )
    assert AuditEvent.objects.filter(verb="dependency.created").count() == 4
    deleted = AuditEvent.objects.get(verb="dependency.deleted")
    assert deleted.before["upstream"] == "a" and deleted.before["downstream"] == "c"


@pytest.fixture
def diamonds(tenant):
    """24 diamonds in a row, each bottom the next one's top: 73 KPIs, 2^24 paths from the first to the last."""
    kpis = [KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key="k0")]
    edges = []
    for level in range(24):
        left, right, bottom = (
            KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=f"k{level}{side}")
            for side in ("l", "r", "b")
        )
        edges += [(kpis[-1], left), (kpis[-1], right), (left, bottom), (right, bottom)]
        kpis.append(bottom)
    Dependency.objects.bulk_create(
        DependencyFactory.build(organization=tenant.org, upstream=up, downstream=down) for up, down in edges
    )
    return kpis


def test_a_graph_of_many_paths_is_checked_in_well_under_a_second(diamonds):
    first, last = diamonds[0], diamonds[-1]
    started = time.monotonic()
    with pytest.raises(ValidationError) as error:
        dependency_create(actor=None, upstream=last, downstream=first, kind="blocks")
    dependency_create(actor=None, upstream=first, downstream=last, kind="blocks")
    assert time.monotonic() - started < 1
    cycle = error.value.message_dict["downstream"][0]
    assert cycle.startswith("This edge would close the cycle k23b -> k0 -> k0")
    assert cycle.endswith(" -> k22b -> k23l -> k23b.") and cycle.count(" -> ") == 49

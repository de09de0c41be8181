"""The dependency pages: a KPI's edges added and removed in place, the organization's graph and its filters, a
KPI's neighbourhood, and the executives' team matrix."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dependencies.models import Dependency
from dependencies.services import dependency_create
from escalations.models import DependencyReview, DependencyReviewSignal, DependencySignal
from governance.models import AuditEvent, Role
from scorecards.models import Kpi, Status
from tests.conftest import Tenant
from tests.factories import KpiFactory, MembershipFactory, TeamFactory
from tests.perf.bench.graph import build_graph

HX = {"HTTP_HX_REQUEST": "true"}
GRAPH_PAGE_QUERIES = 11  # session, user, membership, teams, scorecards (whose KPIs a member sees), edges, "around"
# choices, suggested edges, unconnected count, nav counts...


def url(name: str, tenant: Tenant, **kwargs) -> str:
    return reverse(name, kwargs={"org_slug": tenant.org.slug, **kwargs})


@pytest.fixture
def chain(tenant: Tenant) -> Tenant:
    """a -> b -> c in the tenant's team, owned by its lead; d in Sales, owned by the member. a is off track."""
    k = {
        key: KpiFactory(organization=tenant.org, team=tenant.team, owner=tenant.lead, key=key, name=f"KPI {key}")
        for key in "abc"
    }
    sales = TeamFactory(organization=tenant.org, key="sales", name="Sales")
    k["d"] = KpiFactory(organization=tenant.org, team=sales, owner=tenant.member, key="d", name="KPI d")
    Kpi.objects.filter(pk=k["a"].pk).update(status=Status.OFF_TRACK)
    k["a"].refresh_from_db()
    dependency_create(actor=None, upstream=k["a"], downstream=k["b"], kind="drives_demand")
    dependency_create(actor=None, upstream=k["b"], downstream=k["c"], kind="blocks", note="Late parts stop the line")
    tenant.k, tenant.sales = k, sales
    return tenant


def svg_of(html: str) -> ET.Element:
    return ET.fromstring(re.search(r"<svg class=\"graph[^\"]*\".*?</svg>", html, re.S).group(0))


# --- the KPI page's panel -------------------------------------------------------------------------


def test_the_kpi_page_loads_the_edges_panel_in_place_and_links_to_it_without_javascript(chain):
    html = chain.client(chain.member).get(url("scorecards:kpi_detail", chain, kpi_id=chain.k["b"].pk)).content.decode()
    panel_url = url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["b"].pk)
    assert f'hx-get="{panel_url}" hx-trigger="load"' in html
    assert f'<a href="{panel_url}">' in html


def test_the_panel_lists_what_a_kpi_depends_on_and_drives_with_statuses_kinds_and_notes(chain):
    response = chain.client(chain.member).get(
        url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["b"].pk), **HX
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html  # the partial only
    upstream, downstream = html.split("<h3>Drives")
    assert "KPI a" in upstream and "status-off_track" in upstream and "Drives demand" in upstream
    assert "KPI c" in downstream and "Blocks" in downstream and "Late parts stop the line" in downstream
    # A member who may not configure KPI b sees the lists only.
    assert "Add a dependency" not in html and "Remove" not in html


def test_the_owner_adds_an_edge_in_place(chain):
    client = chain.client(chain.lead)
    b, d = chain.k["b"], chain.k["d"]
    data = {"relation": "upstream", "other": d.pk, "kind": "informs", "lag": "2w", "note": "Sales mix"}
    response = client.post(url("dependencies:dependency_add", chain, kpi_id=b.pk), data, **HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "KPI b now depends on KPI d." in html
    edge = Dependency.objects.get(upstream=d, downstream=b)
    assert (edge.kind, edge.lag, edge.note) == ("informs", timedelta(weeks=2), "Sales mix")
    assert AuditEvent.objects.filter(verb="dependency.created", actor=chain.lead.user).count() == 1


def test_drives_makes_the_page_kpi_the_upstream_and_a_plain_post_redirects(chain):
    client = chain.client(chain.lead)
    c, d = chain.k["c"], chain.k["d"]
    response = client.post(
        url("dependencies:dependency_add", chain, kpi_id=c.pk),
        {"relation": "downstream", "other": d.pk, "kind": "blocks"},
    )
    assert response.status_code == 302 and response["Location"] == url(
        "dependencies:dependency_neighbourhood", chain, kpi_id=c.pk
    )
    assert Dependency.objects.filter(upstream=c, downstream=d, lag=None, note="").exists()
    page = client.get(response["Location"]).content.decode()
    assert "KPI d now depends on KPI c." in page


@pytest.mark.parametrize("htmx", [True, False])
def test_an_edge_closing_a_cycle_is_refused_with_the_cycle_and_nothing_is_stored(chain, htmx):
    client = chain.client(chain.admin)
    a = chain.k["a"]
    before = list(Dependency.objects.values_list("pk", flat=True))
    # "a depends on c" would close a -> b -> c -> a.
    data = {"relation": "upstream", "other": chain.k["c"].pk, "kind": "blocks"}
    response = client.post(url("dependencies:dependency_add", chain, kpi_id=a.pk), data, **(HX if htmx else {}))
    html = response.content.decode()
    assert response.status_code == (200 if htmx else 422)
    assert "This edge would close the cycle c -&gt; a -&gt; b -&gt; c." in html
    assert 'role="alert"' in html and '<details class="edit dep-add" open>' in html  # next to the open form
    assert list(Dependency.objects.values_list("pk", flat=True)) == before
    assert not AuditEvent.objects.filter(verb="dependency.created", actor=chain.admin.user).exists()


def test_a_duplicate_edge_is_refused(chain):
    data = {"relation": "upstream", "other": chain.k["a"].pk, "kind": "blocks"}
    response = chain.client(chain.lead).post(
        url("dependencies:dependency_add", chain, kpi_id=chain.k["b"].pk), data, **HX
    )
    assert "KPI b already depends on KPI a." in response.content.decode()
    assert Dependency.objects.filter(upstream=chain.k["a"], downstream=chain.k["b"]).count() == 1


def test_the_form_offers_only_this_organizations_live_kpis_and_refuses_a_foreign_one(chain, stranger_tenant):
    archived = KpiFactory(organization=chain.org, team=chain.team, owner=chain.lead, key="old", name="Old KPI")
    Kpi.objects.filter(pk=archived.pk).update(archived_at=timezone.now())
    client = chain.client(chain.lead)
    html = client.get(
        url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["b"].pk), **HX
    ).content.decode()
    assert f'value="{chain.k["d"].pk}"' in html and "KPI d (d)" in html
    assert "Old KPI" not in html and f'<option value="{stranger_tenant.kpi.pk}"' not in html
    data = {"relation": "upstream", "other": stranger_tenant.kpi.pk, "kind": "blocks"}
    response = client.post(url("dependencies:dependency_add", chain, kpi_id=chain.k["b"].pk), data, **HX)
    assert "Select a valid choice" in response.content.decode()
    assert not Dependency.objects.filter(upstream=stranger_tenant.kpi).exists()


@pytest.mark.parametrize("htmx", [True, False])
def test_the_owner_removes_an_edge(chain, htmx):
    client = chain.client(chain.lead)
    edge = Dependency.objects.get(upstream=chain.k["b"], downstream=chain.k["c"])
    response = client.post(
        url("dependencies:dependency_delete", chain, dependency_id=edge.pk),
        {"kpi": chain.k["c"].pk},
        **(HX if htmx else {}),
    )
    if htmx:
        html = response.content.decode()
        assert response.status_code == 200 and "KPI c no longer depends on KPI b." in html
        assert "Nothing upstream." in html  # the panel of the page it was on: KPI c
    else:
        assert response["Location"] == url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["c"].pk)
    assert not Dependency.objects.filter(pk=edge.pk).exists()
    deleted = AuditEvent.objects.get(verb="dependency.deleted")
    assert deleted.actor == chain.lead.user and deleted.before["upstream"] == "b"


def test_who_may_edit_the_edges_of_a_kpi(chain):
    """Admins and whoever may configure the KPI (its owner, or a holder of the object permission) add and
    remove; a member or an executive without that gets 403 (audited) and nothing changes."""
    b, d = chain.k["b"], chain.k["d"]
    edge = Dependency.objects.get(upstream=chain.k["a"], downstream=b)
    add = {"relation": "upstream", "other": d.pk, "kind": "blocks"}
    for who in (chain.member, chain.executive):
        client = chain.client(who)
        assert client.post(url("dependencies:dependency_add", chain, kpi_id=b.pk), add, **HX).status_code == 403
        assert client.post(url("dependencies:dependency_delete", chain, dependency_id=edge.pk), **HX).status_code == 403
    denied = AuditEvent.objects.filter(verb="security.permission_denied")
    assert sum(e.times for e in denied) == 4 and {e.actor_id for e in denied} == {
        chain.member.user_id,
        chain.executive.user_id,
    }
    assert Dependency.objects.count() == 2
    # The member owns d, so may draw d's edges, from d's page.
    member = chain.client(chain.member)
    assert (
        member.post(url("dependencies:dependency_add", chain, kpi_id=d.pk), {**add, "other": b.pk}, **HX).status_code
        == 200
    )
    assert Dependency.objects.filter(upstream=b, downstream=d).exists()
    # Someone granted the object permission on a KPI may edit it too; the admin may edit any.
    other = MembershipFactory(organization=chain.org, role=Role.MEMBER)
    from guardian.shortcuts import assign_perm

    assign_perm("scorecards.configure_kpi", other.user, b)
    assert (
        chain.client(other).post(url("dependencies:dependency_delete", chain, dependency_id=edge.pk), **HX).status_code
        == 200
    )
    admin = chain.client(chain.admin)
    html = admin.get(url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["c"].pk), **HX).content.decode()
    assert "Add a dependency" in html and "Remove" in html


# --- the organization's graph ----------------------------------------------------------------------


def test_the_graph_page_says_how_to_start_when_there_are_no_edges(tenant):
    html = tenant.client(tenant.member).get(url("dependencies:dependency_graph", tenant)).content.decode()
    assert "No dependencies yet" in html and "manifest" in html and '<svg class="graph' not in html
    assert f'href="{url("dependencies:dependency_graph", tenant)}" aria-current="page">Dependencies</a>' in html


def test_the_graph_page_draws_100_kpis_in_a_fixed_number_of_queries(tenant, django_assert_max_num_queries):
    kpis = build_graph(tenant.org, tenant.lead)
    edges = Dependency.objects.filter(organization=tenant.org).count()
    client = tenant.client(tenant.member)
    with django_assert_max_num_queries(GRAPH_PAGE_QUERIES):
        response = client.get(url("dependencies:dependency_graph", tenant))
    html = response.content.decode()
    svg = svg_of(html)
    drawn = {a.get("href") for a in svg.iter("a")}
    assert len(svg.findall(".//a")) == len(drawn) == 100
    assert drawn == {url("scorecards:kpi_detail", tenant, kpi_id=k.pk) for k in kpis}
    assert len(svg.findall(".//path")) == edges > 100
    # The text alternative lists every edge; the KPIs without any edge are counted, not drawn.
    assert html.count('<td class="edge-kind">') == edges
    assert "1 KPI without any dependency is not drawn." in html  # the tenant's own KPI
    # The same page again draws the same picture.
    assert str(ET.tostring(svg_of(client.get(url("dependencies:dependency_graph", tenant)).content.decode()))) == str(
        ET.tostring(svg)
    )


def test_the_graph_filters_by_team_red_and_around_a_kpi(chain):
    client = chain.client(chain.member)
    dependency_create(actor=None, upstream=chain.k["c"], downstream=chain.k["d"], kind="informs")

    def drawn(**query) -> set[str]:
        response = client.get(url("dependencies:dependency_graph", chain), query)
        assert response.status_code == 200
        return {t.text for t in svg_of(response.content.decode()).iter("text") if (t.get("class") or "") == "node-name"}

    assert drawn() == {"KPI a", "KPI b", "KPI c", "KPI d"}
    assert drawn(team=chain.sales.pk) == {"KPI c", "KPI d"}  # edges touching Sales, with their other end
    assert drawn(red=1) == {"KPI a", "KPI b"}  # edges touching an at-risk or off-track KPI
    assert drawn(around=chain.k["d"].pk) == {"KPI a", "KPI b", "KPI c", "KPI d"}
    assert drawn(around=chain.k["a"].pk, to_team=chain.team.pk) == {"KPI a", "KPI b", "KPI c"}
    assert drawn(from_team=chain.team.pk, to_team=chain.sales.pk) == {"KPI c", "KPI d"}
    # htmx gets the body only, for the filters to swap in place.
    partial = client.get(url("dependencies:dependency_graph", chain), {"red": 1}, **HX).content.decode()
    assert partial.startswith('\n<div id="graph-body">') or partial.lstrip().startswith('<div id="graph-body">')
    empty = client.get(url("dependencies:dependency_graph", chain), {"team": chain.sales.pk, "red": 1}).content.decode()
    assert "No dependency matches these filters" in empty
    # Around a KPI whose edges the other filters leave out, and around one without any edge.
    filtered = client.get(
        url("dependencies:dependency_graph", chain), {"around": chain.k["a"].pk, "from_team": chain.sales.pk}
    )
    assert "No dependency matches these filters" in filtered.content.decode()
    lonely = client.get(url("dependencies:dependency_graph", chain), {"around": chain.kpi.pk}).content.decode()
    assert "Throughput has no dependencies yet" in lonely and len(svg_of(lonely).findall(".//a")) == 1


def test_around_a_foreign_kpi_is_404_and_audited(chain, stranger_tenant):
    response = chain.client(chain.member).get(
        url("dependencies:dependency_graph", chain), {"around": stranger_tenant.kpi.pk}
    )
    assert response.status_code == 404
    assert AuditEvent.objects.filter(verb="security.foreign_id", organization=chain.org).count() == 1


def test_the_neighbourhood_page_draws_the_kpis_closure_only(chain):
    unrelated = KpiFactory(organization=chain.org, team=chain.sales, owner=chain.member, key="e", name="KPI e")
    dependency_create(actor=None, upstream=chain.k["d"], downstream=unrelated, kind="informs")
    html = (
        chain.client(chain.member)
        .get(url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.k["b"].pk))
        .content.decode()
    )
    svg = svg_of(html)
    assert {t.text for t in svg.iter("text") if t.get("class") == "node-name"} == {"KPI a", "KPI b", "KPI c"}
    assert [g.get("class") for g in svg.iter("g") if "node-focus" in (g.get("class") or "")] == [
        "node node-no_data node-focus"
    ]
    assert len(svg.findall(".//path")) == 2
    assert "Every dependency in the chain" in html and "css/graph.css" in html
    lone = (
        chain.client(chain.member)
        .get(url("dependencies:dependency_neighbourhood", chain, kpi_id=chain.kpi.pk))
        .content.decode()
    )
    assert "No dependencies yet; declare them below (the KPI's owner or an admin can) or in the manifest." in lone


# --- the team matrix ------------------------------------------------------------------------------


def _open_review(tenant: Tenant, upstream: Kpi, downstream: Kpi, answered: bool = False) -> DependencyReview:
    now = timezone.now()
    signal = DependencySignal.objects.create(organization=tenant.org, kpi=upstream, kind="status", at=now, cause="red")
    review = DependencyReview.objects.create(
        organization=tenant.org,
        kpi=downstream,
        opened_at=now,
        due_at=now + timedelta(days=2),
        answered_at=now if answered else None,
    )
    DependencyReviewSignal.objects.create(
        organization=tenant.org, signal=signal, review=review, kpi=downstream, upstream=upstream, at=now
    )
    return review


def test_the_matrix_counts_edges_red_and_stale_upstreams_and_open_reviews(chain):
    k = chain.k
    Kpi.objects.filter(pk=k["c"].pk).update(status=Status.STALE)
    dependency_create(actor=None, upstream=k["c"], downstream=k["d"], kind="informs")  # stale, to Sales
    dependency_create(actor=None, upstream=k["a"], downstream=k["d"], kind="informs")  # red, to Sales
    _open_review(chain, k["a"], k["d"])
    _open_review(chain, k["c"], k["d"], answered=True)  # answered: not counted
    _open_review(chain, k["a"], k["b"])
    response = chain.client(chain.executive).get(url("escalations:dependency_matrix", chain))
    assert response.status_code == 200
    rows = {row["team"].name: {down.name: cell for down, cell in row["cells"]} for row in response.context["rows"]}
    ops_to_sales = rows["Operations"]["Sales"]
    assert {key: ops_to_sales[key] for key in ("edges", "red", "stale", "reviews")} == {
        "edges": 2,
        "red": 1,
        "stale": 1,
        "reviews": 1,
    }
    ops_to_ops = rows["Operations"]["Operations"]
    assert (ops_to_ops["edges"], ops_to_ops["red"], ops_to_ops["stale"], ops_to_ops["reviews"]) == (2, 1, 0, 1)
    assert rows["Sales"]["Operations"] is None and rows["Sales"]["Sales"] is None
    ctx = response.context
    assert (ctx["edge_total"], ctx["red_total"], ctx["stale_total"], ctx["review_total"]) == (4, 2, 1, 2)
    # A cell opens the graph of just its edges.
    html = response.content.decode()
    cell_url = f"{url('dependencies:dependency_graph', chain)}?from_team={chain.team.pk}&amp;to_team={chain.sales.pk}"
    assert f'href="{cell_url}"' in html


def test_only_executives_and_admins_see_the_matrix(chain):
    assert chain.client(chain.admin).get(url("escalations:dependency_matrix", chain)).status_code == 200
    assert chain.client(chain.member).get(url("escalations:dependency_matrix", chain)).status_code == 403
    denied = AuditEvent.objects.get(verb="security.permission_denied")
    assert denied.actor == chain.member.user and denied.after["what"] == "admins or executives"
    # The graph page offers the matrix to those who may open it.
    assert (
        "Team matrix"
        not in chain.client(chain.member).get(url("dependencies:dependency_graph", chain)).content.decode()
    )
    assert (
        "Team matrix" in chain.client(chain.executive).get(url("dependencies:dependency_graph", chain)).content.decode()
    )


def test_the_matrix_without_edges_says_how_to_start(tenant):
    html = tenant.client(tenant.executive).get(url("escalations:dependency_matrix", tenant)).content.decode()
    assert "No dependencies yet" in html

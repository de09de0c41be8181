"""The dependency pages: the organization's graph, a KPI's neighbourhood with its edges, adding and removing an edge.

The KPI page (scorecards, which may not import this app) loads the edges panel from `dependency_neighbourhood`
with htmx; without JavaScript it links to that page, which shows the same panel with plain forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dependencies import graph, selectors, services
from dependencies.forms import DependencyForm
from dependencies.models import Dependency, SuggestedDependency
from governance.access import deny, get_for_org_or_404
from governance.durations import format_duration
from governance.forms import apply_errors
from governance.models import Team
from scorecards.models import Kpi, Status
from scorecards.selectors import can_configure_kpi, visible_kpis

RED = (Status.AT_RISK, Status.OFF_TRACK)
CONFIGURERS = "admins and those who may configure the KPI"


# --- building the picture --------------------------------------------------------------------------


@dataclass
class GraphFilters:
    teams: list[Team] = field(default_factory=list)  # edges touching any of these teams
    from_team: Team | None = None  # edges whose upstream is in this team ...
    to_team: Team | None = None  # ... and whose downstream is in this one (the matrix's cells)
    red: bool = False  # edges touching an at-risk or off-track KPI
    around: Kpi | None = None  # the KPI with its upstream and downstream closure
    fit: bool = False  # not a filter: the picture scaled to the page instead of scrolling sideways

    @property
    def active(self) -> bool:
        return bool(self.teams or self.from_team or self.to_team or self.red or self.around)

    def query(self, **changes) -> str:
        """The filters as a query string, e.g. to link to the graph without one of them."""
        values = {
            "team": [t.pk for t in self.teams],
            "from_team": self.from_team.pk if self.from_team else None,
            "to_team": self.to_team.pk if self.to_team else None,
            "red": 1 if self.red else None,
            "around": self.around.pk if self.around else None,
            "fit": 1 if self.fit else None,
        } | changes
        pairs = []
        for name, value in values.items():
            for v in value if isinstance(value, list) else [value]:
                if v not in (None, "", False):
                    pairs.append(f"{name}={v}")
        return "&".join(pairs)


def _filters(request: HttpRequest, teams: list[Team]) -> GraphFilters:
    by_id = {str(t.pk): t for t in teams}
    get = request.GET
    around = get.get("around", "")
    return GraphFilters(
        # Unknown team ids are ignored: only the organization's own teams are looked at.
        teams=[by_id[v] for v in dict.fromkeys(get.getlist("team")) if v in by_id],
        from_team=by_id.get(get.get("from_team", "")),
        to_team=by_id.get(get.get("to_team", "")),
        red=get.get("red") in ("1", "on", "true"),
        fit=get.get("fit") in ("1", "on", "true"),
        # A foreign KPI id is refused like anywhere else (404, audited).
        around=get_for_org_or_404(request, _visible(request).select_related("team"), around)
        if around.isdigit()
        else None,
    )


# What the pictures and tables read of a KPI (the status chip included): a KPI row is wide, and a graph page
# loads two per edge.
KPI_FIELDS = ("name", "key", "team", "team__name", "status", "pending_status", "pending_for", "keep_for")


def _live_edges(request: HttpRequest, within: set[int] | None = None) -> list[Dependency]:
    """Every edge of the organization between KPIs that are not archived (both inside `within`, if given), with
    both KPIs and their teams; each KPI carries its page's address as `href` (one reverse per KPI rather than
    one per table cell)."""
    qs = selectors.edges(org=request.org).filter(upstream__archived_at=None, downstream__archived_at=None)
    if request.membership.role == "member":  # an edge shows both its KPIs: both must be visible
        visible = _visible(request)
        qs = qs.filter(upstream__in=visible, downstream__in=visible)
    if within is not None:
        qs = qs.filter(upstream_id__in=within, downstream_id__in=within)
    edges = list(
        qs.only(
            "kind", "lag", "note", *(f"{end}__{f}" for end in ("upstream", "downstream") for f in KPI_FIELDS)
        ).order_by("pk")
    )
    hrefs: dict[int, str] = {}
    for e in edges:
        for kpi in (e.upstream, e.downstream):
            if kpi.pk not in hrefs:
                hrefs[kpi.pk] = reverse(
                    "scorecards:kpi_detail", kwargs={"org_slug": request.org.slug, "kpi_id": kpi.pk}
                )
            kpi.href = hrefs[kpi.pk]
    return edges


def _chain(request: HttpRequest, kpi: Kpi) -> set[int]:
    """The KPI with everything upstream and downstream of it."""
    near = {kpi.pk}
    for direction in ("upstream", "downstream"):
        near |= set(selectors.closure(org=request.org, kpi_ids=[kpi.pk], direction=direction))
    return near


def _filtered(request: HttpRequest, edges: list[Dependency], f: GraphFilters) -> list[Dependency]:
    if f.around is not None:
        near = _chain(request, f.around)
        edges = [e for e in edges if e.upstream_id in near and e.downstream_id in near]
    if f.teams:
        ids = {t.pk for t in f.teams}
        edges = [e for e in edges if e.upstream.team_id in ids or e.downstream.team_id in ids]
    if f.from_team:
        edges = [e for e in edges if e.upstream.team_id == f.from_team.pk]
    if f.to_team:
        edges = [e for e in edges if e.downstream.team_id == f.to_team.pk]
    if f.red:
        edges = [e for e in edges if e.upstream.status in RED or e.downstream.status in RED]
    return edges


def _suggested(request: HttpRequest, edges: list[Dependency], f: GraphFilters) -> list[SuggestedDependency]:
    """Open suggestions to draw dashed: all of them on the unfiltered graph, else those between KPIs drawn."""
    qs = SuggestedDependency.objects.for_org(request.org).filter(
        state=SuggestedDependency.State.SUGGESTED, upstream__archived_at=None, downstream__archived_at=None
    )
    if request.membership.role == "member":
        visible = _visible(request)
        qs = qs.filter(upstream__in=visible, downstream__in=visible)
    if f.active:
        drawn = {e.upstream_id for e in edges} | {e.downstream_id for e in edges}
        qs = qs.filter(upstream_id__in=drawn, downstream_id__in=drawn)
    return list(qs.select_related("upstream__team", "downstream__team").order_by("pk"))


def _picture(
    request: HttpRequest,
    edges: list[Dependency],
    *,
    title: str,
    focus: Kpi | None = None,
    fit: bool = False,
    suggested: list[SuggestedDependency] = (),
) -> str:
    kpis: dict[int, Kpi] = {}
    for e in [*edges, *suggested]:
        kpis[e.upstream_id], kpis[e.downstream_id] = e.upstream, e.downstream
    if focus is not None:
        kpis.setdefault(focus.pk, focus)
    org = request.org.slug
    nodes = [
        graph.Node(
            id=k.pk,
            name=k.name,
            key=k.key,
            team=k.team.name,
            status=k.status,
            href=getattr(k, "href", None) or reverse("scorecards:kpi_detail", kwargs={"org_slug": org, "kpi_id": k.pk}),
            focus=focus is not None and k.pk == focus.pk,
        )
        for k in kpis.values()
    ]
    lines = [
        graph.Edge(
            upstream=e.upstream_id,
            downstream=e.downstream_id,
            kind=e.kind,
            kind_label=e.get_kind_display(),
            lag=format_duration(e.lag) if e.lag else "",
        )
        for e in edges
    ]
    lines += [
        graph.Edge(
            upstream=s.upstream_id,
            downstream=s.downstream_id,
            kind="suggested",
            kind_label=f"suggested by the data (r {s.coefficient:.2f})",
            lag=f"{s.lag_days}d",
        )
        for s in suggested
    ]
    return graph.graph_svg(nodes, lines, title=title, fit=fit)


def _table(edges: list[Dependency]) -> list[Dependency]:
    """The picture's text alternative, in reading order: by upstream team and name, then downstream."""
    return sorted(
        edges,
        key=lambda e: (e.upstream.team.name, e.upstream.name, e.downstream.team.name, e.downstream.name, e.pk),
    )


# --- the organization's graph ----------------------------------------------------------------------


@require_GET
def dependency_graph(request: HttpRequest) -> HttpResponse:
    teams = list(Team.objects.for_org(request.org).order_by("name"))
    f = _filters(request, teams)
    everything = _live_edges(request)
    edges = _filtered(request, everything, f)
    live = _visible(request).filter(archived_at=None)
    ends = Dependency.objects.for_org(request.org)
    connected = Q(pk__in=ends.values("upstream_id")) | Q(pk__in=ends.values("downstream_id"))
    title = "Dependencies between KPIs" + (f" around {f.around.name}" if f.around else "")
    # Around a KPI without any edge: its box alone, and where to declare some.
    lonely = f.around is not None and not any(f.around.pk in (e.upstream_id, e.downstream_id) for e in everything)
    suggested = _suggested(request, edges, f)
    context = {
        "filters": f,
        "without_pair": f.query(from_team=None, to_team=None),
        "teams": teams,
        # "Around" offers the KPIs that have an edge (and the one chosen, even if it has none).
        "kpi_choices": live.filter(connected | Q(pk__in=[f.around.pk] if f.around else []))
        .select_related("team")
        .order_by("team__name", "name"),
        "edges": _table(edges),
        "edge_total": len(everything),
        "picture": _picture(request, edges, title=title, focus=f.around, fit=f.fit, suggested=suggested)
        if edges or lonely or suggested
        else "",
        "suggested": suggested,
        "lonely": lonely,
        "unconnected": live.exclude(connected).count(),
        "may_see_matrix": request.membership.is_admin or request.membership.is_executive,
    }
    if request.htmx:
        return render(request, "dependencies/graph.html#body", context)
    return render(request, "dependencies/graph.html", context)


# --- a KPI's neighbourhood and its edges -----------------------------------------------------------


def _panel_context(request: HttpRequest, kpi: Kpi, form: DependencyForm | None = None, notice: str = "") -> dict:
    may_edit = can_configure_kpi(request.membership, kpi)
    if may_edit and form is None:
        form = DependencyForm(kpi=kpi)
    return {
        "kpi": kpi,
        "upstream": kpi.upstream_edges.select_related("upstream__team").order_by("upstream__name", "pk"),
        "downstream": kpi.downstream_edges.select_related("downstream__team").order_by("downstream__name", "pk"),
        "may_edit": may_edit,
        "form": form if may_edit else None,
        "notice": notice,
    }


def _neighbourhood_page(request: HttpRequest, kpi: Kpi, form: DependencyForm | None = None, status: int = 200):
    """The full page: the picture of the KPI's upstream and downstream chain, its edges and the form."""
    edges = _live_edges(request, within=_chain(request, kpi))
    fit = request.GET.get("fit") == "1"
    context = _panel_context(request, kpi, form) | {
        "picture": _picture(request, edges, title=f"Dependencies of {kpi.name}", focus=kpi, fit=fit),
        "fit": fit,
        "edges": _table(edges),
        "inline": False,  # plain forms here: after a change the page (and its picture) is drawn again
    }
    return render(request, "dependencies/kpi.html", context, status=status)


def _panel(
    request: HttpRequest, kpi: Kpi, form: DependencyForm | None = None, notice: str = "", add_open: bool = False
) -> HttpResponse:
    """The edges panel alone, as the KPI page swaps it in place."""
    context = _panel_context(request, kpi, form, notice) | {"inline": True, "add_open": add_open}
    return render(request, "dependencies/kpi.html#panel", context)


def _get_kpi(request: HttpRequest, kpi_id: int) -> Kpi:
    return get_for_org_or_404(request, _visible(request).select_related("team", "owner__user"), kpi_id)


def _visible(request: HttpRequest):
    return visible_kpis(Kpi.objects.for_org(request.org), request.membership)


@require_GET
def dependency_neighbourhood(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi = _get_kpi(request, kpi_id)
    if request.htmx:
        return _panel(request, kpi)
    return _neighbourhood_page(request, kpi)


@require_POST
def dependency_add(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi = _get_kpi(request, kpi_id)
    if not can_configure_kpi(request.membership, kpi):
        raise deny(request, CONFIGURERS)
    form = DependencyForm(request.POST, kpi=kpi)
    if form.is_valid():
        try:
            edge = services.dependency_create(actor=request.user, **form.edge())
        except ValidationError as e:
            apply_errors(form, e)
        else:
            notice = f"{edge.downstream.name} now depends on {edge.upstream.name}."
            if request.htmx:
                return _panel(request, kpi, notice=notice, add_open=True)  # ready for the next one
            messages.success(request, notice)
            return redirect("dependencies:dependency_neighbourhood", org_slug=request.org.slug, kpi_id=kpi.pk)
    # Refused: the form again with the reason next to it; nothing was stored.
    if request.htmx:
        return _panel(request, kpi, form)
    return _neighbourhood_page(request, kpi, form, status=422)


@require_POST
def dependency_delete(request: HttpRequest, dependency_id: int) -> HttpResponse:
    edge = get_for_org_or_404(
        request, Dependency.objects.select_related("upstream__team", "downstream__team"), dependency_id
    )
    ends = {edge.upstream_id: edge.upstream, edge.downstream_id: edge.downstream}
    if not any(can_configure_kpi(request.membership, k) for k in ends.values()):
        raise deny(request, CONFIGURERS)
    # The page the button was on: one of the edge's two KPIs (anything else falls back to the downstream one).
    page_id = request.POST.get("kpi", "")
    kpi = ends.get(int(page_id)) if page_id.isdigit() else None
    kpi = kpi or edge.downstream
    notice = f"{edge.downstream.name} no longer depends on {edge.upstream.name}."
    try:
        services.dependency_delete(dependency=edge, actor=request.user)
    except ValidationError as e:
        notice = " ".join(e.messages)
        if request.htmx:
            return _panel(request, kpi, notice=notice)
        messages.error(request, notice)
        return redirect("dependencies:dependency_neighbourhood", org_slug=request.org.slug, kpi_id=kpi.pk)
    if request.htmx:
        return _panel(request, kpi, notice=notice)
    messages.success(request, notice)
    return redirect("dependencies:dependency_neighbourhood", org_slug=request.org.slug, kpi_id=kpi.pk)

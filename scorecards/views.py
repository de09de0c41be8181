from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from governance import exports
from governance import selectors as governance_selectors
from governance.access import (
    decision_authority,
    deny,
    get_for_org_or_404,
    role_required,
)
from governance.forms import apply_errors
from governance.models import Role, Team
from scorecards import row_cache, selectors, services
from scorecards.charts.kpi import kpi_chart
from scorecards.forms import (
    CheckInForm,
    KeyResultForm,
    KpiForm,
    ObjectiveForm,
    TransferRequestForm,
)
from scorecards.models import (
    KeyResult,
    Kpi,
    Objective,
    OwnershipTransfer,
    Scorecard,
    Status,
)

STATUS_CHOICES = Status.choices
SORT_COLUMNS = [("name", "KPI"), ("team", "Team"), ("owner", "Owner"), ("status", "Status"), ("age", "Data age")]
NARROW_HIDDEN = {"team", "owner", "age"}  # phones show them on the KPI page instead
WIDE_ONLY = {"team"}  # below 1440 px the owner's cell names the team in its tooltip, so each KPI keeps one line


def _filters(request: HttpRequest) -> selectors.KpiFilters:
    get = request.GET
    as_int = lambda name: int(get[name]) if get.get(name, "").isdigit() else None  # noqa: E731
    sort = get.get("sort", "status")
    return selectors.KpiFilters(
        team_id=as_int("team"),
        status=get.get("status", "") if get.get("status") in Status.values else "",
        objective_id=as_int("objective"),
        text=get.get("q", "").strip()[:100],
        sort=sort.lstrip("-") if sort.lstrip("-") in selectors.SORTS else "status",
        descending=sort.startswith("-"),
    )


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """The organization's home: KPIs by status, the worst ones first, teams, and whether the workers run."""
    kpis = selectors.kpi_list(org=request.org, viewer=request.membership)
    counts = selectors.status_counts(kpis)
    return render(
        request,
        "scorecards/overview.html",
        {
            "counts": [(value, label, counts[value]) for value, label in STATUS_CHOICES],
            "kpi_total": sum(counts.values()),
            "attention": kpis.filter(status__in=[Status.OFF_TRACK, Status.AT_RISK, Status.STALE])[:8],
            "teams": governance_selectors.team_tree(org=request.org),
            "member_count": governance_selectors.member_list(org=request.org, include_inactive=False).count(),
            "health": governance_selectors.worker_health(),
        },
    )


def _sort_links(request: HttpRequest, filters: selectors.KpiFilters) -> list[dict]:
    """Each column header links to the same filters sorted by it; a second click reverses the order."""
    links = []
    for column, label in SORT_COLUMNS:
        query = request.GET.copy()
        active = filters.sort == column
        query["sort"] = f"-{column}" if active and not filters.descending else column
        links.append(
            {
                "label": label,
                "query": query.urlencode(),
                "active": active,
                "descending": filters.descending,
                "narrow_hide": column in NARROW_HIDDEN,
                "wide_only": column in WIDE_ONLY,
            }
        )
    return links


DENSITIES = ("comfortable", "compact")


def _density(request: HttpRequest) -> dict:
    """The table's row spacing: `?density=` switches it, and the session remembers the choice for this person.
    Each choice links to the same filters with that density."""
    chosen = request.GET.get("density")
    if chosen in DENSITIES:
        request.session["scorecard_density"] = chosen
    links = []
    for density in DENSITIES:
        query = request.GET.copy()
        query["density"] = density
        links.append({"name": density, "label": density.capitalize(), "query": query.urlencode()})
    return {"current": request.session.get("scorecard_density", DENSITIES[0]), "links": links}


@require_GET
def scorecard(request: HttpRequest, scorecard_id: int | None = None) -> HttpResponse:
    """All KPIs, or one scorecard's: filters and sorting swap the table partial and stay in the URL."""
    card = None
    if scorecard_id is None and "scorecard" in request.GET:  # the phone's scorecard select
        picked = request.GET["scorecard"]
        target = (
            reverse("scorecards:scorecard", args=[request.org.slug, int(picked)])
            if picked.isdigit()
            else reverse("scorecards:kpi_list", args=[request.org.slug])
        )
        return HttpResponseClientRedirect(target) if request.htmx else redirect(target)
    if scorecard_id is not None:
        card = get_for_org_or_404(request, Scorecard, scorecard_id)
        if not selectors.scorecard_visible(card, request.membership):
            raise deny(request, "this scorecard's viewers")
    filters = _filters(request)
    if fmt := exports.requested_format(request):
        kpis = selectors.kpi_list(org=request.org, viewer=request.membership, filters=filters, scorecard=card)
        return exports.export_response(
            fmt=fmt,
            name=slugify(card.name if card else "kpis") or "scorecard",
            columns=selectors.SCORECARD_COLUMNS,
            rows=selectors.scorecard_table(kpis),
            tz=request.org.tzinfo,
        )
    counts = selectors.status_counts(selectors.kpi_list(org=request.org, viewer=request.membership, scorecard=card))
    kpis = selectors.kpi_list(org=request.org, viewer=request.membership, filters=filters, scorecard=card)
    rows = row_cache.scorecard_rows(org=request.org, kpis=kpis, now=timezone.now())
    context = {
        "card": card,
        "density": _density(request),
        "cards": selectors.scorecards_for(membership=request.membership),
        "rows": rows,
        "counts": [(value, label, counts[value]) for value, label in STATUS_CHOICES],
        "sort_links": _sort_links(request, filters),
        "filters": filters,
        "statuses": STATUS_CHOICES,
        "teams": Team.objects.for_org(request.org),
        "objectives": Objective.objects.for_org(request.org).filter(archived_at=None),
    }
    template = "scorecards/scorecard.html#table" if request.htmx else "scorecards/scorecard.html"
    return render(request, template, context)


@require_GET
def kpi_detail(request: HttpRequest, kpi_id: int) -> HttpResponse:
    related = Kpi.objects.select_related("team", "owner__user", "data_source", "manual")
    kpi = get_for_org_or_404(request, selectors.visible_kpis(related, request.membership), kpi_id)
    page = Paginator(kpi.measurements.order_by("-at"), 25).get_page(request.GET.get("page"))
    if request.htmx and request.GET.get("page"):
        return render(request, "scorecards/kpi_detail.html#measurements", {"kpi": kpi, "page": page})
    membership = request.membership
    transfers = kpi.transfers.select_related("from_owner__user", "to_owner__user", "requested_by", "decided_by")
    pending = next((t for t in transfers if t.state == OwnershipTransfer.State.PENDING), None)
    may_request = bool(decision_authority(kind="transfer_request", by=membership, also={kpi.owner_id}))
    return render(
        request,
        "scorecards/kpi_detail.html",
        {
            "kpi": kpi,
            "chart": kpi_chart(kpi, request.org.tzinfo),
            "pending_elapsed": timezone.now() - kpi.pending_since if kpi.pending_since else None,
            "page": page,
            "changes": kpi.status_changes.all()[:20],
            "transfers": transfers,
            "pending_transfer": pending,
            # The transfer decision's authority (four eyes: never the requester); the form posts to the escalations
            # app, which records the decision.
            "may_decide": pending is not None and bool(services.transfer_authority(pending, membership)),
            "transfer_form": TransferRequestForm(kpi=kpi) if may_request and pending is None else None,
            "may_configure": selectors.can_configure_kpi(membership, kpi),
            "key_results": kpi.key_results.select_related("objective"),
            "open_workstream": kpi.workstreams.filter(resolved_at=None).first(),
        },
    )


@require_http_methods(["GET", "POST"])
def kpi_settings(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi = get_for_org_or_404(request, Kpi, kpi_id)
    if not selectors.can_configure_kpi(request.membership, kpi):
        raise deny(request, "admins and the KPI's owner")
    form = KpiForm(request.POST or None, instance=kpi, org=request.org)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.kpi_update(kpi=kpi, actor=request.user, **form.settings())
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Settings saved.")
                return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=kpi.pk)
        kpi.refresh_from_db()
    return render(request, "scorecards/kpi_form.html", {"form": form, "kpi": kpi}, status=422 if form.errors else 200)


@role_required(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def kpi_create(request: HttpRequest) -> HttpResponse:
    form = KpiForm(request.POST or None, org=request.org)
    if form.is_valid():
        try:
            kpi = services.kpi_create(
                actor=request.user,
                organization=request.org,
                key=form.cleaned_data["key"],
                owner=form.cleaned_data["owner"],
                **form.settings(),
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"KPI {kpi} created. Its data arrives through the API, CSV or a data source.")
            return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=kpi.pk)
    return render(request, "scorecards/kpi_form.html", {"form": form}, status=422 if form.errors else 200)


@require_POST
def transfer_request(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi = get_for_org_or_404(request, Kpi.objects.select_related("owner__user"), kpi_id)
    form = TransferRequestForm(request.POST, kpi=kpi)
    if form.is_valid():
        try:
            services.ownership_transfer_request(
                kpi=kpi,
                requester=request.membership,
                to_owner=form.cleaned_data["to_owner"],
                reason=form.cleaned_data["reason"],
            )
        except PermissionDenied as e:
            raise deny(request, "the owner, admins and executives") from e
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, "Transfer requested; an admin or executive must approve it.")
    else:
        messages.error(request, "Pick the new owner and give a reason.")
    return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=kpi.pk)


@require_POST
def transfer_cancel(request: HttpRequest, transfer_id: int) -> HttpResponse:
    transfer = get_for_org_or_404(request, OwnershipTransfer, transfer_id)
    try:
        services.ownership_transfer_cancel(transfer=transfer, actor=request.membership)
    except PermissionDenied as e:
        raise deny(request, "the requester, admins and executives") from e
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=transfer.kpi_id)


@require_http_methods(["GET", "POST"])
def okr_tree(request: HttpRequest) -> HttpResponse:
    may_edit = request.membership.role in (Role.ADMIN, Role.EXECUTIVE)
    form = ObjectiveForm(request.POST or None, org=request.org) if may_edit else None
    if request.method == "POST":
        if not may_edit:
            raise deny(request, "admins and executives")
        if form.is_valid():
            objective = services.objective_create(actor=request.user, organization=request.org, **form.cleaned_data)
            messages.success(request, f"Objective {objective} created.")
            return redirect("scorecards:okr_tree", org_slug=request.org.slug)
    today = timezone.localdate()
    return render(
        request,
        "scorecards/okrs.html",
        {
            "tree": selectors.objective_tree(org=request.org, on=None if request.GET.get("all") else today),
            "form": form,
            "kr_form": KeyResultForm(org=request.org) if may_edit else None,
            "check_in_form": CheckInForm(),
            "show_all": bool(request.GET.get("all")),
        },
        status=422 if form is not None and form.errors else 200,
    )


@require_http_methods(["GET", "POST"])
def objective_edit(request: HttpRequest, objective_id: int) -> HttpResponse:
    objective = get_for_org_or_404(request, Objective, objective_id)
    if request.membership.role not in (Role.ADMIN, Role.EXECUTIVE) and objective.owner_id != request.membership.pk:
        raise deny(request, "admins, executives and the objective's owner")
    form = ObjectiveForm(request.POST or None, instance=objective, org=request.org)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.objective_update(objective=objective, actor=request.user, **form.cleaned_data)
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Objective saved.")
                return redirect("scorecards:okr_tree", org_slug=request.org.slug)
        objective.refresh_from_db()
    return render(
        request,
        "scorecards/objective_form.html",
        {"form": form, "objective": objective},
        status=422 if form.errors else 200,
    )


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_POST
def key_result_create(request: HttpRequest, objective_id: int) -> HttpResponse:
    objective = get_for_org_or_404(request, Objective, objective_id)
    form = KeyResultForm(request.POST, org=request.org)
    if form.is_valid():
        services.key_result_create(actor=request.user, objective=objective, **form.cleaned_data)
        messages.success(request, "Key result added.")
    else:
        errors = "; ".join(
            f"{form.fields[f].label if f in form.fields else ''}: {' '.join(e)}".lstrip(": ")
            for f, e in form.errors.items()
        )
        messages.error(request, f"The key result was not added. {errors}")
    return redirect("scorecards:okr_tree", org_slug=request.org.slug)


@require_POST
def key_result_check_in(request: HttpRequest, key_result_id: int) -> HttpResponse:
    key_result = get_for_org_or_404(request, KeyResult, key_result_id)
    form = CheckInForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter the current value as a number.")
    else:
        try:
            services.key_result_check_in(key_result=key_result, by=request.membership, **form.cleaned_data)
        except PermissionDenied as e:
            raise deny(request, "the key result's owner") from e
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, f"Checked in {form.cleaned_data['value']:g} for {key_result}.")
    return redirect("scorecards:okr_tree", org_slug=request.org.slug)


@require_GET
def my_work(request: HttpRequest) -> HttpResponse:
    membership = request.membership
    owned = selectors.kpi_list(org=request.org, viewer=request.membership).filter(owner=membership)
    decide = []
    if membership.role in (Role.ADMIN, Role.EXECUTIVE):
        decide = (
            OwnershipTransfer.objects.for_org(request.org)
            .filter(state=OwnershipTransfer.State.PENDING)
            .exclude(requested_by=request.user)
            .select_related("kpi", "from_owner__user", "to_owner__user", "requested_by")
        )
    return render(
        request,
        "scorecards/my_work.html",
        {
            "owned": owned,
            "key_results": KeyResult.objects.for_org(request.org)
            .filter(owner=membership, kpi=None, archived_at=None)
            .select_related("objective"),
            "objectives": Objective.objects.for_org(request.org).filter(owner=membership, archived_at=None),
            "transfers_to_decide": decide,
            "my_transfers": OwnershipTransfer.objects.for_org(request.org)
            .filter(state=OwnershipTransfer.State.PENDING, to_owner=membership)
            .select_related("kpi", "from_owner__user"),
            # Escalation tasks through the reverse relation (scorecards does not import escalations).
            # A dependency review task can list several of the owner's KPIs: `kpis` counts them.
            "open_tasks": membership.tasks.filter(state__in=["open", "acknowledged"])
            .select_related("kpi", "workstream")
            .annotate(kpis=Count("reviews"))
            .order_by("due_at", "id"),
        },
    )

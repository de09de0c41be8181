"""The pages of what comes in: CSV imports and data sources (defined by the manifest, pulled by workers)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from governance import selectors as governance_selectors
from governance.access import admin_required, get_for_org_or_404
from governance.models import Organization
from scorecards.connectors.registry import connector_kind, credentials
from scorecards.ingestion import csv_import, pulls, selectors, source_edit
from scorecards.ingestion.forms import DataSourceForm, MeasurementImportForm
from scorecards.manifest.values import duration_form
from scorecards.models import DataSource, DataSourceRun, Kpi


def _csv_example(org: Organization) -> str:
    """A few lines in the organization's own terms: one of its KPI keys, recent days in its zone."""
    kpis = Kpi.objects.for_org(org).filter(archived_at=None).order_by("key")
    key = kpis.values_list("key", flat=True).first() or "sales.revenue"
    day = timezone.localdate(timezone=org.tzinfo)
    lines = [
        f"{key},{datetime.combine(day - timedelta(days=n), time(9), org.tzinfo).isoformat(timespec='minutes')},{value}"
        for n, value in [(3, "1250"), (2, "1310.5"), (1, "1288")]
    ]
    return "\n".join(["kpi,at,value", *lines])


@admin_required
@require_http_methods(["GET", "POST"])
def measurement_import(request: HttpRequest) -> HttpResponse:
    """A CSV upload: small files are imported within the request, larger ones by a worker; both end on the
    job's page, which shows the result or the live progress."""
    form = MeasurementImportForm(request.POST or None, request.FILES or None)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        job = csv_import.measurement_import_create(
            org=request.org,
            actor=request.user,
            filename=upload.name,
            content=upload.read(),
            sheet=form.cleaned_data["sheet"].strip(),
        )
        if job.rows_total <= settings.IMPORT_INLINE_MAX_ROWS:
            csv_import.measurement_import_run(job=job)
        else:
            csv_import.measurement_import_queue(job=job)
        return redirect("scorecards:measurement_import_job", org_slug=request.org.slug, job_id=job.pk)
    return render(
        request,
        "scorecards/import.html",
        {
            "form": form,
            "jobs": selectors.import_jobs(org=request.org)[:20],
            "example": _csv_example(request.org),
            "max_bytes": settings.IMPORT_MAX_BYTES,
            "inline_rows": settings.IMPORT_INLINE_MAX_ROWS,
        },
        status=422 if form.errors else 200,
    )


@admin_required
@require_GET
def measurement_import_job(request: HttpRequest, job_id: int) -> HttpResponse:
    """An import's progress, polled by htmx until it has finished, then its result."""
    job = get_for_org_or_404(request, selectors.import_jobs(org=request.org), job_id)
    template = "scorecards/import_job.html#job" if request.htmx else "scorecards/import_job.html"
    return render(request, template, {"job": job})


# --- data sources -------------------------------------------------------------------------------

RUNS_PER_PAGE = 20


@require_GET
def data_sources(request: HttpRequest) -> HttpResponse:
    """Every live data source with its schedule, last run, health and the freshness of the KPIs it feeds; every
    member may look, admins change them (here or in the manifest)."""
    sources = list(selectors.data_source_list(org=request.org))
    last_runs = DataSourceRun.objects.in_bulk([s.last_run_id for s in sources if s.last_run_id])
    feeds = selectors.data_source_feeds(org=request.org, sources=sources)
    rows = [{"source": s, "last_run": last_runs.get(s.last_run_id), "feeds": feeds[s.pk]} for s in sources]
    return render(request, "scorecards/data_sources.html", {"rows": rows, "now": timezone.now()})


def _data_source_page(request: HttpRequest, source: DataSource, notice: str = "") -> HttpResponse:
    """The source's page, or its live part for htmx: polled while a run is on its way."""
    now = timezone.now()
    runs = selectors.data_source_runs(source=source)
    config = source.config or {}
    named = credentials(source)
    secrets_set = governance_selectors.secret_names(org=request.org)
    context = {
        "source": source,
        "connector": connector_kind(source.kind),
        "page": Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page")),
        "last_run": runs.first(),
        "feeds": selectors.data_source_feeds(org=request.org, sources=[source])[source.pk],
        "running": runs.filter(pulls.unfinished_runs(now=now)).exists(),
        # `items` read in a template would find the dict's method when a pull has none
        "pulls": [{**pull, "path": pull.get("items")} for pull in config.get("pulls", [])],
        "credentials": named,
        "secrets_set": secrets_set,
        "missing_secrets": sorted({n for _, origin, n in named if origin == "secret"} - secrets_set),
        "now": now,
        "notice": notice,
    }
    template = "scorecards/data_source.html#live" if request.htmx else "scorecards/data_source.html"
    return render(request, template, context)


@require_GET
def data_source(request: HttpRequest, source_id: int) -> HttpResponse:
    return _data_source_page(request, get_for_org_or_404(request, DataSource, source_id))


@admin_required
@require_POST
def data_source_run(request: HttpRequest, source_id: int) -> HttpResponse:
    """Run now: a worker pulls the source at once; htmx gets the live part back and follows the run."""
    source = get_for_org_or_404(request, DataSource, source_id)
    try:
        pulls.data_source_run_request(source=source, actor=request.user)
    except ValidationError as e:
        notice = " ".join(e.messages)
    else:
        notice = "Run queued: a worker pulls the source now."
    if request.htmx:
        return _data_source_page(request, source, notice)
    messages.info(request, notice)
    return redirect("scorecards:data_source", org_slug=request.org.slug, source_id=source.pk)


# --- data sources changed on their pages (admins) ------------------------------------------------


def _source_form_page(request: HttpRequest, form: DataSourceForm, source: DataSource | None) -> HttpResponse:
    status = 422 if form.errors else 200
    return render(request, "scorecards/data_source_form.html", {"form": form, "source": source}, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def data_source_new(request: HttpRequest) -> HttpResponse:
    form = DataSourceForm(request.POST or None, org=request.org)
    if form.is_valid():
        try:
            source = source_edit.data_source_save(org=request.org, actor=request.user, data=form.data_source)
        except ValidationError as e:
            form.add_error("key", e)
        else:
            messages.info(request, f"Data source {source.key} created: the next sweep pulls it.")
            return redirect("scorecards:data_source", org_slug=request.org.slug, source_id=source.pk)
    return _source_form_page(request, form, None)


@admin_required
@require_http_methods(["GET", "POST"])
def data_source_edit(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_org_or_404(request, DataSource.objects.filter(archived_at=None), source_id)
    initial = {
        "key": source.key,
        "kind": source.kind,
        "every": duration_form(source.every),
        "task_after": source.task_after,
        "settings": source_edit.settings_text(source),
    }
    form = DataSourceForm(request.POST or None, org=request.org, initial=initial)
    if form.is_valid():
        try:
            source_edit.data_source_save(org=request.org, actor=request.user, data=form.data_source, source=source)
        except ValidationError as e:
            form.add_error("key", e)
        else:
            messages.info(request, "Saved: the next sweep pulls it with the new settings.")
            return redirect("scorecards:data_source", org_slug=request.org.slug, source_id=source.pk)
    return _source_form_page(request, form, source)


def _dry_pull(request: HttpRequest, source: DataSource | None, problems: list[str]) -> HttpResponse:
    result = pulls.data_source_dry_pull(source=source) if source is not None else None
    context = {"result": result, "problems": problems}
    if request.htmx:
        return render(request, "scorecards/data_source_form.html#dry_pull", context)
    return render(request, "scorecards/data_source_test.html", context | {"source": source})


@admin_required
@require_POST
def data_source_test(request: HttpRequest) -> HttpResponse:
    """Test the form's settings: a dry pull of the source as it would be saved; nothing is stored."""
    form = DataSourceForm(request.POST, org=request.org)
    if not form.is_valid():
        fields = [f"{name}: {e}" for name, errors in form.errors.items() if name != "__all__" for e in errors]
        return _dry_pull(request, None, [*form.non_field_errors(), *fields])
    return _dry_pull(request, source_edit.data_source_unsaved(org=request.org, data=form.data_source), [])


@admin_required
@require_POST
def data_source_test_saved(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_org_or_404(request, DataSource.objects.filter(archived_at=None), source_id)
    return _dry_pull(request, source, [])


@admin_required
@require_POST
def data_source_pause(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_org_or_404(request, DataSource.objects.filter(archived_at=None), source_id)
    paused = request.POST.get("paused") == "1"
    source_edit.data_source_pause(source=source, actor=request.user, paused=paused)
    messages.info(request, "Paused: the sweep leaves it alone until resumed." if paused else "Resumed.")
    return redirect("scorecards:data_source", org_slug=request.org.slug, source_id=source.pk)


@admin_required
@require_POST
def data_source_delete(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_org_or_404(request, DataSource.objects.filter(archived_at=None), source_id)
    source_edit.data_source_delete(source=source, actor=request.user)
    messages.info(request, f"Data source {source.key} deleted; its measurements stay.")
    return redirect("scorecards:data_sources", org_slug=request.org.slug)

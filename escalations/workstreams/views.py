""""""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from escalations.engine import authority as deciding
from escalations.models import (
    MitigationAction,
    MitigationPath,
    Task,
    Workstream,
)
from escalations.workstreams import selectors, services
from escalations.workstreams.forms import (
    BLANK_ROWS,
    MAX_ACTIONS,
    ActionUpdateForm,
    CloseForm,
    PathForm,
    ReviewAnswerForm,
    ReviewForm,
    WorkstreamFilterForm,
    action_formset,
    posted_rows,
)
from governance import exports
from governance.access import deny, get_for_org_or_404, refuse
from governance.forms import apply_errors
from governance.models import Membership
from scorecards.models import Kpi
from scorecards.selectors import visible_kpis

PAGE_SIZE = 50


def _get_workstream(request: HttpRequest, workstream_id: int) -> Workstream:
    return get_for_org_or_404(request, selectors.workstreams(org=request.org), workstream_id)


def _path_form_context(ws: Workstream, path: MitigationPath | None, request: HttpRequest) -> dict:
    """A fresh filing form; after a rejection it starts from the rejected path, so the owner revises it."""
    if path is not None and path.state == MitigationPath.State.REJECTED:
        today = timezone.localdate(timezone=request.org.tzinfo)
        form = PathForm(
            initial={"root_cause": path.root_cause, "expected_recovery": max(path.expected_recovery, today)}
        )
        rows = [{"description": a.description, "owner": a.owner_id, "due": a.due} for a in path.actions.all()]
        return {"path_form": form, "action_formset": action_formset(org=request.org, rows=[*rows, {}])}
    return {"path_form": PathForm(), "action_formset": action_formset(org=request.org)}


def _workstream_page(
    request: HttpRequest,
    ws: Workstream,
    forms: dict | None = None,
    notice: str = "",
    error: str = "",
    failed: bool = False,
) -> HttpResponse:
    """The whole page, or for htmx its body: every part one decision can change (state, path, tasks, timeline).
    `forms` carries bound forms with their errors; a failure answers 422, except to htmx, which swaps only 2xx."""
    membership, forms = request.membership, forms or {}
    paths = list(selectors.path_history(ws))
    path = paths[0] if paths else None
    is_open, awaiting = ws.is_open, path is not None and path.state == MitigationPath.State.SUBMITTED
    tasks = list(ws.tasks.select_related("assignee__user").order_by("-created_at", "-id"))
    skipped = selectors.level_skipped(ws)
    context = {
        "ws": ws,
        "path": path,
        "earlier_paths": paths[1:],
        "awaiting": awaiting,
        "move": selectors.next_move(ws, path, tasks),
        "escalation": selectors.escalation_state(ws, skipped=skipped, told="" if skipped else selectors.level_told(ws)),
        "next": selectors.what_next(ws),
        "events": ws.events.select_related("actor"),
        # Who is on it now; done and cancelled tasks are history, folded into the timeline.
        "tasks": sorted((t for t in tasks if t.is_open), key=lambda t: (t.due_at, t.pk)),
        "past_tasks": [t for t in tasks if not t.is_open],
        # A rejected path's actions are not being carried out: nobody reports on them.
        "may_update": {
            a.pk
            for a in (path.actions.all() if path and path.state != MitigationPath.State.REJECTED else [])
            if is_open and services.may_update_action(a, membership)
        },
        "notice": notice,
        "error": error,
        "max_actions": MAX_ACTIONS,
        **forms,
    }
    if "path_form" not in forms and is_open and not awaiting and services.may_file(ws, membership):
        context.update(_path_form_context(ws, path, request))
    # The forms a person may use, as the decision's authority answers (four eyes included).
    if (
        "review_form" not in forms
        and is_open
        and awaiting
        and deciding.authority("path_review", by=membership, path=path)
    ):
        context["review_form"] = ReviewForm()
    if "close_form" not in forms and is_open and deciding.authority("workstream_close", by=membership, workstream=ws):
        context["close_form"] = CloseForm()
    status = 422 if (failed or error) and not request.htmx else 200
    template = "escalations/workstream.html#body" if request.htmx else "escalations/workstream.html"
    return render(request, template, context, status=status)


def _done(request: HttpRequest, ws: Workstream, notice: str) -> HttpResponse:
    """After a successful decision: the refreshed body for htmx, else a redirect (so a reload never repeats it)."""
    if request.htmx:
        ws.refresh_from_db()
        return _workstream_page(request, ws, notice=notice)
    messages.success(request, notice)
    return redirect("escalations:workstream_detail", org_slug=request.org.slug, workstream_id=ws.pk)


def _refused(request: HttpRequest, ws: Workstream, error: str) -> HttpResponse:
    """A decision the service refused (e.g. already answered): said on the page, nothing changed."""
    if request.htmx:
        return _workstream_page(request, ws, error=error)
    messages.error(request, error)
    return redirect("escalations:workstream_detail", org_slug=request.org.slug, workstream_id=ws.pk)


@require_GET
def workstream_detail(request: HttpRequest, workstream_id: int) -> HttpResponse:
    return _workstream_page(request, _get_workstream(request, workstream_id))


@require_POST
def mitigation_path_file(request: HttpRequest, workstream_id: int) -> HttpResponse:
    ws = _get_workstream(request, workstream_id)
    if not services.may_file(ws, request.membership):
        raise deny(request, "the KPI's owner")
    if "add_row" in request.POST or "remove_row" in request.POST:
        return _path_form_rows(request, ws)
    form, formset = PathForm(request.POST), action_formset(org=request.org, data=request.POST)
    actions_errors: list[str] = []
    if form.is_valid() and formset.is_valid():
        try:
            services.mitigation_path_file(
                workstream=ws,
                by=request.membership,
                root_cause=form.cleaned_data["root_cause"],
                expected_recovery=form.cleaned_data["expected_recovery"],
                actions=formset.drafts(),
            )
        except ValidationError as e:
            actions_errors = _apply_path_errors(form, e)
        else:
            return _done(request, ws, "Mitigation path filed; the reviewers are told.")
    forms = {"path_form": form, "action_formset": formset, "actions_errors": actions_errors, "revise_open": True}
    return _workstream_page(request, ws, forms, failed=True)


def _apply_path_errors(form: PathForm, error: ValidationError) -> list[str]:
    """The service's errors on the form; those about the actions go above the action rows (returned)."""
    if not hasattr(error, "error_dict"):
        apply_errors(form, error)
        return []
    errors = error.message_dict
    actions = errors.pop("actions", [])
    if errors:
        apply_errors(form, ValidationError(errors))
    return actions


def _path_form_rows(request: HttpRequest, ws: Workstream) -> HttpResponse:
    """The "Add action" and "Remove" buttons: the form again with one row more or less, everything typed kept.
    Nothing is validated or stored; without JavaScript the same buttons post the page and get it back."""
    rows = posted_rows(request.POST)
    remove = request.POST.get("remove_row", "")
    if remove.isdigit() and int(remove) < len(rows):
        del rows[int(remove)]
    focus = None
    if "add_row" in request.POST and len(rows) < MAX_ACTIONS:
        rows.append({})
        focus = len(rows) - 1
    rows = rows or [{}] * BLANK_ROWS
    form = PathForm(initial={name: request.POST.get(name, "") for name in PathForm.base_fields})
    formset = action_formset(org=request.org, rows=rows)
    if focus is not None:
        formset.forms[focus].fields["description"].widget.attrs["autofocus"] = True
    if request.htmx:
        context = {"ws": ws, "path_form": form, "action_formset": formset, "max_actions": MAX_ACTIONS}
        context["revise_open"] = True
        context["path"] = selectors.latest_path(ws)
        return render(request, "escalations/workstream.html#path-form", context)
    return _workstream_page(request, ws, {"path_form": form, "action_formset": formset, "revise_open": True})


@require_POST
def mitigation_path_review(request: HttpRequest, path_id: int) -> HttpResponse:
    path = get_for_org_or_404(request, MitigationPath, path_id)
    ws = _get_workstream(request, path.workstream_id)
    path.workstream = ws
    allowed = deciding.authority("path_review", by=request.membership, path=path)
    if not allowed:
        raise refuse(request, allowed.refusal)
    form = ReviewForm(request.POST)
    if form.is_valid():
        approve = form.cleaned_data["decision"] == "approve"
        try:
            services.mitigation_path_review(
                path=path, by=request.membership, approve=approve, comment=form.cleaned_data["reason"]
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            verdict = "approved: escalation stops" if approve else "rejected: it goes back to the owner"
            notice = f"Mitigation path {verdict}."
            task = _my_task(request, ws) if _from_inbox(request) else None
            return _inbox_row(request, task, notice) if task else _done(request, ws, notice)
    task = _my_task(request, ws) if _from_inbox(request) else None
    if task is not None:
        return _inbox_row(request, task, error=" ".join(m for ms in form.errors.values() for m in ms))
    return _workstream_page(request, ws, {"review_form": form}, failed=True)


def _my_task(request: HttpRequest, ws: Workstream) -> Task | None:
    """The escalation task that put the decision in my inbox (the decision may just have closed it)."""
    return (
        ws.tasks.filter(assignee=request.membership, kind=Task.Kind.ESCALATION).order_by("-created_at", "-id").first()
    )


@require_POST
def workstream_close(request: HttpRequest, workstream_id: int) -> HttpResponse:
    ws = _get_workstream(request, workstream_id)
    allowed = deciding.authority("workstream_close", by=request.membership, workstream=ws)
    if not allowed:
        raise refuse(request, allowed.refusal)
    form = CloseForm(request.POST)
    if form.is_valid():
        try:
            services.workstream_close(workstream=ws, by=request.membership, **form.cleaned_data)
        except ValidationError as e:
            apply_errors(form, e)
        else:
            return _done(request, ws, "Workstream closed; everyone who was told hears the decision.")
    return _workstream_page(request, ws, {"close_form": form}, failed=True)


def _from_inbox(request: HttpRequest) -> bool:
    return request.POST.get("next") == "inbox"


def _inbox_row(
    request: HttpRequest, task: Task, notice: str = "", error: str = "", part: int | None = None
) -> HttpResponse:
    """The task's decision row after it was answered in place (htmx), or back to the inbox. `part`: the review of
    the task the notice or error is about (a review task lists one per KPI)."""
    row = selectors.decision_of(membership=request.membership, task_id=task.pk) if request.htmx else None
    if row is not None:
        _mark_no_impact(row.tasks, request.membership)
        context = {"d": row, "now": timezone.now(), "notice": notice, "error": error, "part": part}
        return render(request, "escalations/inbox.html#decision-row", context | {"oob_counts": True})
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect("escalations:task_inbox", org_slug=request.org.slug)


@require_POST
def task_acknowledge(request: HttpRequest, task_id: int) -> HttpResponse:
    task = get_for_org_or_404(request, Task.objects.select_related("workstream"), task_id)
    if task.assignee_id != request.membership.pk:
        raise deny(request, "the task's assignee")
    notice, error = "Acknowledged: escalation waits while you are on it.", ""
    try:
        services.task_acknowledge(task=task, by=request.membership)
    except ValidationError as e:
        notice, error = "", " ".join(e.messages)
    if _from_inbox(request) or task.workstream_id is None:
        return _inbox_row(request, task, notice, error)
    ws = _get_workstream(request, task.workstream_id)
    return _refused(request, ws, error) if error else _done(request, ws, notice)


@require_POST
def task_answer(request: HttpRequest, task_id: int) -> HttpResponse:
    """One KPI of a dependency review answered in place: impact (a preventive workstream) or no impact with a
    reason. A review task lists every KPI the upstream changes reached; each is answered on its own."""
    task = get_for_org_or_404(request, Task.objects.select_related("review"), task_id)
    if not services.may_answer(task, request.membership):
        raise deny(request, "the review's assignee")
    form = ReviewAnswerForm(request.POST)
    notice, error, part = "", "", None
    if not form.is_valid():
        error = "Say whether the upstream change affects this KPI."
        part = form.cleaned_data.get("review")
    else:
        part, impact = form.cleaned_data["review"], form.cleaned_data["impact"]
        try:
            review = services.dependency_review_answer(
                task=task, by=request.membership, impact=impact, reason=form.cleaned_data["reason"], review_id=part
            )
        except PermissionDenied as e:  # four eyes: not on behalf of the downstream owner
            raise refuse(request, str(e)) from e
        except ValidationError as e:
            error = " ".join(e.messages)
            if "kpi" in getattr(e, "error_dict", {}):
                part = None  # not one of the task's reviews: said above them
        else:
            part = review.pk
            verdict = "no impact, reason recorded"
            if impact:  # a KPI already in an episode keeps that one workstream, which hears of the impact
                preventive = review.workstream.kind == Workstream.Kind.PREVENTIVE
                verdict = "a preventive workstream is open" if preventive else "its open workstream records the impact"
            notice = f"Answered for {review.kpi.name}: {verdict}."
    return _inbox_row(request, task, notice, error, part)


@require_POST
def action_update(request: HttpRequest, action_id: int) -> HttpResponse:
    action = get_for_org_or_404(request, MitigationAction.objects.select_related("path__workstream__kpi"), action_id)
    if not services.may_update_action(action, request.membership):
        raise deny(request, "the action's owner and the KPI's owner")
    form = ActionUpdateForm(request.POST)
    if form.is_valid():
        try:
            services.action_update(action=action, by=request.membership, **form.cleaned_data)
        except ValidationError as e:
            apply_errors(form, e)
    saved = not form.errors
    notice = ("Action marked done." if form.cleaned_data.get("done") else "Progress recorded.") if saved else ""
    if _from_inbox(request):
        task = action.tasks.filter(assignee=request.membership).order_by("-created_at", "-id").first()
        if task is not None:
            return _inbox_row(request, task, notice, "" if saved else " ".join(form.non_field_errors()))
    ws = _get_workstream(request, action.path.workstream_id)
    if saved:
        return _done(request, ws, notice)
    return _workstream_page(request, ws, {"action_form": form, "action_form_for": action.pk}, failed=True)


@require_GET
def workstream_list(request: HttpRequest) -> HttpResponse:
    """Every episode of the organization, open ones first; the filters live in the URL."""
    filter_form = WorkstreamFilterForm(request.GET)
    filters = filter_form.filters()
    visible = visible_kpis(Kpi.objects.for_org(request.org), request.membership)
    rows = selectors.workstream_list(org=request.org, **filters).filter(kpi__in=visible)
    if fmt := exports.requested_format(request):
        columns = ["KPI", "Kind", "Severity", "Opened", "Resolved", "Resolution", "Escalation level"]
        table = (
            [
                ws.kpi.name,
                ws.get_kind_display(),
                ws.get_severity_display(),
                ws.opened_at,
                ws.resolved_at,
                ws.get_resolution_display(),
                ws.level,
            ]
            for ws in rows
        )
        return exports.export_response(fmt=fmt, name="workstreams", columns=columns, rows=table, tz=request.org.tzinfo)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    upcoming = selectors.what_next_of(list(page.object_list))
    for ws in page.object_list:
        ws.next = upcoming[ws.pk]
    counts = (
        selectors.workstreams(org=request.org)
        .filter(kpi__in=visible)
        .aggregate(
            open=Count("pk", filter=Q(resolved_at=None)), resolved=Count("pk", filter=Q(resolved_at__isnull=False))
        )
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "counts": counts,
        "states": WorkstreamFilterForm.STATES,
        "kinds": Workstream.Kind.choices,
        "query": query.urlencode(),
        "now": timezone.now(),
    }
    template = "escalations/workstreams.html#results" if request.htmx else "escalations/workstreams.html"
    return render(request, template, context)


@require_GET
def task_inbox(request: HttpRequest) -> HttpResponse:
    """What waits for me as a decision queue: one row per KPI, the most overdue first, each decided in place."""
    decisions = selectors.decision_queue(membership=request.membership)
    _mark_no_impact([t for row in decisions for t in row.tasks], request.membership)
    return render(request, "escalations/inbox.html", {"decisions": decisions, "now": timezone.now()})


def _mark_no_impact(tasks: list[Task], membership: Membership) -> None:
    """Sets each review's `no_impact_refusal` (empty: the member may answer "no impact"). The authority can refuse an
    assignee only where they own an upstream KPI of the review and not the reviewed one, so only there is it asked
    (from what the inbox has read, without a query per review elsewhere)."""
    for task in tasks:
        for review in task.review_parts:
            owns_upstream = any(s.upstream.owner_id == membership.pk for s in review.signals.all())
            interested = owns_upstream and review.kpi.owner_id != membership.pk
            answer = (
                deciding.authority("review_no_impact", by=membership, review=review, task=task) if interested else None
            )
            review.no_impact_refusal = answer.refusal if answer is not None else ""

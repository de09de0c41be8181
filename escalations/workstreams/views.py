from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dependencies import selectors as dependency_selectors
from escalations.engine import authority as deciding
from escalations.engine.timing import Level, Policy
from escalations.models import (
    DependencyReviewSignal,
    EscalationPolicy,
    MitigationAction,
    MitigationPath,
    Notification,
    NotificationPreference,
    Task,
    Webhook,
    Workstream,
)
from escalations.notify import webhooks
from escalations.policies import selectors as policy_selectors
from escalations.policies.forms import (
    MAX_LEVELS,
    DefaultsForm,
    LevelForm,
    PolicyForm,
    PreviewForm,
    WebhookForm,
    apply_op,
    level_forms,
    posted_levels,
    stored_levels,
    target_choices,
)
from escalations.workstreams import selectors, services
from escalations.workstreams.forms import (
    BLANK_ROWS,
    MAX_ACTIONS,
    ActionUpdateForm,
    CloseForm,
    NotificationPreferencesForm,
    PathForm,
    ReviewAnswerForm,
    ReviewForm,
    WorkstreamFilterForm,
    action_formset,
    posted_rows,
)
from governance.access import admin_required, deny, get_for_org_or_404, refuse, role_required
from governance.forms import apply_errors
from governance.models import Membership, Role, Team
from scorecards.models import Kpi, Status
from scorecards.selectors import visible_kpis

PAGE_SIZE = 50

# --- the workstream page -------------------------------------------------------------------------


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
    context = {
        "ws": ws,
        "path": path,
        "earlier_paths": paths[1:],
        "awaiting": awaiting,
        "escalation": selectors.escalation_state(ws, skipped=selectors.level_skipped(ws)),
        "next": selectors.what_next(ws),
        "events": ws.events.select_related("actor"),
        "tasks": ws.tasks.select_related("assignee__user").order_by("-created_at", "-id"),
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
    return redirect("workstream_detail", org_slug=request.org.slug, workstream_id=ws.pk)


def _refused(request: HttpRequest, ws: Workstream, error: str) -> HttpResponse:
    """A decision the service refused (e.g. already answered): said on the page, nothing changed."""
    if request.htmx:
        return _workstream_page(request, ws, error=error)
    messages.error(request, error)
    return redirect("workstream_detail", org_slug=request.org.slug, workstream_id=ws.pk)


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
            return _done(request, ws, f"Mitigation path {verdict}.")
    return _workstream_page(request, ws, {"review_form": form}, failed=True)


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


# --- tasks and actions: answered on the workstream page or in place in the inbox ----------------------


def _from_inbox(request: HttpRequest) -> bool:
    return request.POST.get("next") == "inbox"


def _inbox_row(
    request: HttpRequest, task: Task, notice: str = "", error: str = "", part: int | None = None
) -> HttpResponse:
    """The task's inbox row after it was answered in place (htmx), or back to the inbox. `part`: the review of the
    task the notice or error is about (a review task lists one per KPI)."""
    if request.htmx:
        task = selectors.inbox_task(membership=request.membership, task_id=task.pk) or task
        _mark_no_impact([task], request.membership)
        context = {"t": task, "now": timezone.now(), "notice": notice, "error": error, "part": part}
        return render(request, "escalations/inbox.html#task-row", context | {"oob_counts": True})
    if error:
        messages.error(request, error)
    else:
        messages.success(request, notice)
    return redirect("task_inbox", org_slug=request.org.slug)


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


# --- lists ------------------------------------------------------------------------------------------


@require_GET
def workstream_list(request: HttpRequest) -> HttpResponse:
    """Every episode of the organization, open ones first; the filters live in the URL."""
    filter_form = WorkstreamFilterForm(request.GET)
    filters = filter_form.filters()
    visible = visible_kpis(Kpi.objects.for_org(request.org), request.membership)
    rows = selectors.workstream_list(org=request.org, **filters).filter(kpi__in=visible)
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
    """What waits for me: open and acknowledged tasks, overdue first, each answered in place."""
    tasks = list(selectors.inbox(membership=request.membership))
    _mark_no_impact(tasks, request.membership)
    return render(request, "escalations/inbox.html", {"tasks": tasks, "now": timezone.now()})


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


# --- notifications --------------------------------------------------------------------------------


@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.notifications(membership=request.membership), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    template = "escalations/notifications.html#list" if request.htmx else "escalations/notifications.html"
    return render(request, template, {"page": page})


@require_POST
def notification_read(request: HttpRequest, notification_id: int) -> HttpResponse:
    notification = get_for_org_or_404(request, Notification.objects.select_related("workstream__kpi"), notification_id)
    if notification.recipient_id != request.membership.pk:
        raise deny(request, "the notification's recipient")
    services.notification_mark_read(membership=request.membership, notification=notification)
    if request.htmx:
        notification.refresh_from_db(fields=["read_at"])
        context = {"n": notification, "oob_counts": True}
        return render(request, "escalations/notifications.html#notification", context)
    return redirect("notification_list", org_slug=request.org.slug)


@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    services.notification_mark_read(membership=request.membership)
    if request.htmx:
        page = Paginator(selectors.notifications(membership=request.membership), PAGE_SIZE).get_page(
            request.POST.get("page")
        )
        return render(request, "escalations/notifications.html#list", {"page": page, "oob_counts": True})
    messages.success(request, "Every notification is marked read.")
    return redirect("notification_list", org_slug=request.org.slug)


@require_http_methods(["GET", "POST"])
def notification_settings(request: HttpRequest) -> HttpResponse:
    """Which kinds reach me on which channel; everything is on until switched off."""
    off = set(
        NotificationPreference.objects.filter(membership=request.membership, enabled=False).values_list(
            "kind", "channel"
        )
    )
    form = NotificationPreferencesForm(request.POST or None, off=off)
    if request.method == "POST" and form.is_valid():
        try:
            services.notification_preferences_set(membership=request.membership, off=form.off())
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, "Notification settings saved.")
            return redirect("notification_settings", org_slug=request.org.slug)
    status = 422 if form.errors else 200
    return render(
        request,
        "escalations/notification_settings.html",
        {"form": form, "channels": Notification.Channel.choices},
        status=status,
    )


# --- escalation policies and webhooks (admins) ------------------------------------------------------
# Pages of the issue "Mitigation workstreams and escalation paths", items 3 (policies) and 5 (webhooks).


def _policy_draft(request: HttpRequest, editing: bool, choices: list) -> tuple[PolicyForm, list[LevelForm], bool]:
    """The editor's posted policy and levels, bound and validated (every form, so every error shows at once)."""
    form = PolicyForm(request.POST, org=request.org, editing=editing)
    rows = level_forms(posted_levels(request.POST), choices, bound=True)
    valid = [form.is_valid(), *(row.is_valid() for row in rows)]
    return form, rows, all(valid)


def _level_drafts(rows: list[LevelForm]) -> list[services.LevelDraft]:
    return [
        services.LevelDraft(tuple(r.cleaned_data["targets"]), r.cleaned_data["wait"], r.cleaned_data["business_hours"])
        for r in rows
    ]


def _draft_preview(request: HttpRequest, form: PolicyForm, rows: list[LevelForm], kpi) -> policy_selectors.Preview:
    draft = Policy(
        form.cleaned_data["mitigation_due"],
        form.cleaned_data["ack_timeout"],
        form.cleaned_data["repeat"],
        tuple(Level(d.targets, d.wait, d.business_hours) for d in _level_drafts(rows)),
    )
    label = f"{form.cleaned_data['name']} (as edited, not saved)"
    return policy_selectors.preview(kpi=kpi, policy=draft, policy_label=label, opened=timezone.now())


def _policy_editor(request: HttpRequest, policy: EscalationPolicy | None) -> HttpResponse:
    """Create and edit. The `op` buttons add, remove and move levels in place (htmx swaps #levels; without
    JavaScript the page comes back with the change), preview the draft, or save it."""
    org, editing = request.org, policy is not None
    keep = [t for level in policy.levels.all() for t in level.targets] if editing else []
    choices = target_choices(org, keep)
    preview_form = PreviewForm(request.POST or None, org=org)
    status, moved, focus, preview, op = 200, "", None, None, request.POST.get("op", "save")
    if request.method == "GET":
        initial = {"repeat": 0, "mitigation_due": "2d", "ack_timeout": "4h"}
        levels = [{"targets": [], "wait": "1d", "business_hours": False}]
        if editing:
            initial = {"name": policy.name, "mitigation_due": policy.mitigation_due, "ack_timeout": policy.ack_timeout}
            initial["repeat"] = policy.repeat
            levels = stored_levels(policy)
        form, rows = PolicyForm(initial=initial, org=org, editing=editing), level_forms(levels, choices, bound=False)
    elif op in ("save", "preview"):
        form, rows, valid = _policy_draft(request, editing, choices)
        if valid and op == "preview" and preview_form.is_valid():
            preview = _draft_preview(request, form, rows, preview_form.cleaned_data["kpi"])
        elif valid and op == "save":
            fields = {name: form.cleaned_data[name] for name in ("name", "mitigation_due", "ack_timeout", "repeat")}
            fields["levels"] = _level_drafts(rows)
            try:
                if editing:
                    policy = services.policy_update(policy=policy, actor=request.user, **fields)
                else:
                    policy = services.policy_create(org=org, actor=request.user, key=form.cleaned_data["key"], **fields)
            except ValidationError as e:
                apply_errors(form, e)
            else:
                verb = "saved; new episodes follow it" if editing else "created"
                messages.success(request, f"Policy {policy.name} {verb}.")
                return redirect("policy_list", org_slug=org.slug)
        status = 200 if valid and not form.errors else 422
    else:
        levels, moved, focus = apply_op(posted_levels(request.POST), op)
        initial = {name: request.POST.get(name) for name in PolicyForm.base_fields}
        form = PolicyForm(initial=initial, org=org, editing=editing)
        rows = level_forms(levels, choices, bound=False)
    context = {
        "policy": policy,
        "form": form,
        "rows": rows,
        "moved": moved,
        "focus": focus,
        "preview_form": preview_form,
        "preview": preview,
        "max_levels": MAX_LEVELS,
        "failed": status == 422,
    }
    if request.htmx and op not in ("save", "preview"):
        return render(request, "escalations/policies_form.html#levels", context)
    return render(request, "escalations/policies_form.html", context, status=status)


@admin_required
@require_GET
def policy_list(request: HttpRequest) -> HttpResponse:
    return _policy_list_page(request, DefaultsForm(org=request.org))


def _policy_list_page(request: HttpRequest, defaults_form: DefaultsForm, status: int = 200) -> HttpResponse:
    active, archived = policy_selectors.policy_cards(org=request.org)
    context = {
        "cards": active,
        "archived": archived,
        "defaults_form": defaults_form,
        "preview_form": PreviewForm(org=request.org),
    }
    return render(request, "escalations/policies.html", context, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def policy_create(request: HttpRequest) -> HttpResponse:
    return _policy_editor(request, None)


@admin_required
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = get_for_org_or_404(request, EscalationPolicy.objects.prefetch_related("levels"), policy_id)
    if policy.archived_at:
        messages.error(request, f"{policy.name} is archived; archived policies are kept as they were.")
        return redirect("policy_list", org_slug=request.org.slug)
    return _policy_editor(request, policy)


@admin_required
@require_POST
def policy_archive(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = get_for_org_or_404(request, EscalationPolicy, policy_id)
    try:
        services.policy_archive(policy=policy, actor=request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"Policy {policy.name} archived. Workstreams that follow it keep their copy.")
    return redirect("policy_list", org_slug=request.org.slug)


@admin_required
@require_POST
def policy_defaults(request: HttpRequest) -> HttpResponse:
    form = DefaultsForm(request.POST, org=request.org)
    if form.is_valid():
        try:
            services.policy_assign_defaults(
                org=request.org, actor=request.user, default=form.default_policy(), teams=form.team_policies()
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, "Default policies saved; they apply to episodes opened from now on.")
            return redirect("policy_list", org_slug=request.org.slug)
    return _policy_list_page(request, form, status=422)


@admin_required
@require_http_methods(["GET", "POST"])
def policy_preview(request: HttpRequest) -> HttpResponse:
    """GET: a KPI under its effective policy or a chosen one. POST: the editor's unsaved draft (htmx)."""
    org, preview, problem = request.org, None, ""
    if request.method == "POST":
        form = PreviewForm(request.POST, org=org)
        # Read-only, so any posted target may stay a choice: one naming nobody of this organization finds nobody.
        posted = [t for level in posted_levels(request.POST) for t in level["targets"]]
        draft, rows, valid = _policy_draft(request, True, target_choices(org, posted))
        if not form.is_valid():
            problem = "Pick a KPI to preview."
        elif not valid:
            errors = [f"{draft.fields[name].label}: {' '.join(e)}" for name, e in draft.errors.items()]
            errors += [f"Level {i}: {' '.join(e)}" for i, row in enumerate(rows, 1) for e in row.errors.values()]
            problem = "Fix the draft first. " + " ".join(errors)
        else:
            preview = _draft_preview(request, draft, rows, form.cleaned_data["kpi"])
    else:
        data = request.GET.copy() if request.GET else None
        if data is not None and "kpi" not in data:
            # The list's "Preview" link names only the policy: show it with the first KPI, the select offers others.
            first = PreviewForm(org=org).fields["kpi"].queryset.first()
            data["kpi"] = str(first.pk) if first else ""
        form = PreviewForm(data, org=org)
        if form.is_valid():
            kpi, chosen = form.cleaned_data["kpi"], form.cleaned_data["policy"]
            if chosen is not None:
                label, policy = f"{chosen.name} (chosen for the preview)", policy_selectors.stored_policy(chosen)
            else:
                label, policy = policy_selectors.effective_policy(kpi)
            preview = policy_selectors.preview(kpi=kpi, policy=policy, policy_label=label, opened=timezone.now())
    context = {"preview_form": form, "preview": preview, "problem": problem}
    if request.htmx:
        return render(request, "escalations/policies_preview.html#timeline", context)
    return render(request, "escalations/policies_preview.html", context)


def _webhook_list_page(request: HttpRequest, form: WebhookForm, status: int = 200) -> HttpResponse:
    hooks = (
        Webhook.objects.for_org(request.org)
        .annotate(
            delivered=Count("deliveries", filter=Q(deliveries__delivered_at__isnull=False)),
            failed=Count("deliveries", filter=Q(deliveries__delivered_at=None, deliveries__attempts__gt=0)),
        )
        .order_by("-is_active", "name")
    )
    return render(request, "escalations/webhooks.html", {"hooks": hooks, "form": form}, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def webhook_list(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _webhook_list_page(request, WebhookForm())
    form = WebhookForm(request.POST)
    if form.is_valid():
        fields = {name: form.cleaned_data[name] for name in ("name", "url", "slack_format")}
        try:
            hook = services.webhook_create(org=request.org, actor=request.user, **fields)
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"Webhook {hook.name} created. Copy its signing secret to your receiver.")
            return redirect("webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    return _webhook_list_page(request, form, status=422)


@admin_required
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, webhook_id: int) -> HttpResponse:
    """Edit and (de)activate, rotate the secret, send a test event, and the latest deliveries."""
    hook = get_for_org_or_404(request, Webhook, webhook_id)
    initial = {name: getattr(hook, name) for name in WebhookForm.Meta.fields}
    form, status = WebhookForm(initial=initial, editing=True), 200
    action = request.POST.get("action")
    if action == "edit":
        form = WebhookForm(request.POST, editing=True)
        if form.is_valid():
            try:
                services.webhook_update(webhook=hook, actor=request.user, **form.cleaned_data)
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Webhook saved.")
                return redirect("webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
        status = 422
    elif action == "rotate":
        services.webhook_rotate_secret(webhook=hook, actor=request.user)
        messages.success(request, "New signing secret in effect: the old one no longer verifies. Update your receiver.")
        return redirect("webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    elif action == "test":
        try:
            delivery = services.webhook_send_test(webhook=hook, actor=request.user)
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            webhooks.deliver_now(delivery)  # after the commit: no transaction waits on the endpoint
            if delivery.delivered_at:
                messages.success(request, f"Test event delivered: HTTP {delivery.status_code}.")
            else:
                messages.error(request, f"Test event failed: {delivery.error}. It is retried like any other.")
        if request.htmx:
            return render(request, "escalations/webhook_detail.html#deliveries", _webhook_context(hook, form))
        return redirect("webhook_detail", org_slug=request.org.slug, webhook_id=hook.pk)
    elif request.method == "POST":
        messages.error(request, "Unknown action.")
    return render(request, "escalations/webhook_detail.html", _webhook_context(hook, form), status=status)


def _webhook_context(hook: Webhook, form: WebhookForm) -> dict:
    return {"hook": hook, "form": form, "deliveries": hook.deliveries.order_by("-created_at", "-id")[:50]}


# --- the team dependency matrix (executives and admins) --------------------------------------------
# Issue "Cross-team dependency graph", item 3. It lives here, in the top layer, because it reads the dependency
# reviews next to the edges; the graph pages themselves are in the dependencies app.

MATRIX_RED = (Status.AT_RISK, Status.OFF_TRACK)


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def dependency_matrix(request: HttpRequest) -> HttpResponse:
    """Teams x teams: the edges from team A's KPIs (upstream, rows) to team B's (downstream, columns), how many of
    those upstreams are red or stale, and the open dependency reviews they caused downstream."""
    org = request.org
    counts = (
        dependency_selectors.edges(org=org)
        .filter(upstream__archived_at=None, downstream__archived_at=None)
        .values("upstream__team_id", "downstream__team_id")
        .annotate(
            n=Count("pk"),
            red=Count("pk", filter=Q(upstream__status__in=MATRIX_RED)),
            stale=Count("pk", filter=Q(upstream__status=Status.STALE)),
        )
        .order_by()
    )
    # A review is open until answered; it belongs to the cell of each upstream team whose signal it lists.
    open_signals = DependencyReviewSignal.objects.for_org(org).filter(review__answered_at=None)
    reviews = (
        open_signals.values("upstream__team_id", "kpi__team_id").annotate(n=Count("review", distinct=True)).order_by()
    )
    cells: dict[tuple[int, int], dict] = {}
    for row in counts:
        cell = {"edges": row["n"], "red": row["red"], "stale": row["stale"], "reviews": 0}
        cells[(row["upstream__team_id"], row["downstream__team_id"])] = cell
    for row in reviews:
        key = (row["upstream__team_id"], row["kpi__team_id"])
        cells.setdefault(key, {"edges": 0, "red": 0, "stale": 0, "reviews": 0})["reviews"] = row["n"]
    involved = {team for pair in cells for team in pair}
    teams = [t for t in Team.objects.for_org(org).order_by("name") if t.pk in involved]
    graph_url = reverse("dependency_graph", kwargs={"org_slug": org.slug})
    rows = []
    for up in teams:
        row_cells = []
        for down in teams:
            cell = cells.get((up.pk, down.pk))
            if cell:
                cell["url"] = f"{graph_url}?from_team={up.pk}&to_team={down.pk}"
            row_cells.append((down, cell))
        total = [c for _, c in row_cells if c]
        rows.append({"team": up, "cells": row_cells, "edges": sum(c["edges"] for c in total)})
    column_totals = [sum(cells.get((up.pk, down.pk), {}).get("edges", 0) for up in teams) for down in teams]
    return render(
        request,
        "escalations/dependency_matrix.html",
        {
            "teams": teams,
            "rows": rows,
            "column_totals": column_totals,
            "edge_total": sum(c["edges"] for c in cells.values()),
            "red_total": sum(c["red"] for c in cells.values()),
            "stale_total": sum(c["stale"] for c in cells.values()),
            # Counted once each, though a review with signals from two teams shows in two cells.
            "review_total": open_signals.values("review_id").distinct().count(),
        },
    )

"""The escalation policy pages (admins): list, editor with its live preview, archive, the defaults."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from escalations.engine.timing import Level, Policy
from escalations.models import (
    EscalationPolicy,
)
from escalations.policies import selectors as policy_selectors
from escalations.policies import services
from escalations.policies.forms import (
    MAX_LEVELS,
    DefaultsForm,
    LevelForm,
    PolicyForm,
    PreviewForm,
    ReplayForm,
    apply_op,
    level_forms,
    posted_levels,
    stored_levels,
    target_choices,
)
from escalations.policies.replay import policy_replay
from governance.access import admin_required, get_for_org_or_404
from governance.forms import apply_errors


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


def _draft(form: PolicyForm, rows: list[LevelForm]) -> Policy:
    return Policy(
        form.cleaned_data["mitigation_due"],
        form.cleaned_data["ack_timeout"],
        form.cleaned_data["repeat"],
        tuple(Level(d.targets, d.wait, d.business_hours) for d in _level_drafts(rows)),
    )


def _draft_preview(request: HttpRequest, form: PolicyForm, rows: list[LevelForm], kpi) -> policy_selectors.Preview:
    draft = _draft(form, rows)
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
    replay_form, replayed = ReplayForm(request.POST if op == "replay" else None), None
    if request.method == "GET":
        initial = {"repeat": 0, "mitigation_due": "2d", "ack_timeout": "4h"}
        levels = [{"targets": [], "wait": "1d", "business_hours": False}]
        if editing:
            initial = {"name": policy.name, "mitigation_due": policy.mitigation_due, "ack_timeout": policy.ack_timeout}
            initial["repeat"] = policy.repeat
            levels = stored_levels(policy)
        form, rows = PolicyForm(initial=initial, org=org, editing=editing), level_forms(levels, choices, bound=False)
    elif op in ("save", "preview", "replay"):
        form, rows, valid = _policy_draft(request, editing, choices)
        if op == "replay":
            valid = replay_form.is_valid() and valid
            if valid:
                replayed = policy_replay(
                    org=org,
                    draft=_draft(form, rows),
                    policy_key=policy.key if editing else "",
                    days=replay_form.cleaned_data["days"],
                )
        elif valid and op == "preview" and preview_form.is_valid():
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
                return redirect("escalations:policy_list", org_slug=org.slug)
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
        "replay_form": replay_form,
        "replayed": replayed,
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
        return redirect("escalations:policy_list", org_slug=request.org.slug)
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
    return redirect("escalations:policy_list", org_slug=request.org.slug)


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
            return redirect("escalations:policy_list", org_slug=request.org.slug)
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

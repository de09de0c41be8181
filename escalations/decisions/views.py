"""The executive review (its agenda, decisions taken in place, sessions and their minutes, the steering pack) and
the decision log. Thin: access helper, form, one service call, render (the item's partial for htmx)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from escalations.decisions import agenda, calendar, pack, pack_files, review_sessions, selectors, services
from escalations.decisions.effectiveness import path_effects
from escalations.decisions.forms import (
    DECISION_FORMS,
    AgendaFilterForm,
    AttendeesForm,
    DecisionFilterForm,
    DecisionForm,
    SessionCloseForm,
    SessionScheduleForm,
    SessionStartForm,
)
from escalations.engine import authority as deciding
from escalations.models import MitigationPath, ReviewSession, Task, Workstream
from escalations.workstreams.selectors import workstreams
from governance import exports, formats
from governance.access import get_for_org_or_404, refuse, role_required
from governance.forms import active_members, apply_errors
from governance.models import Role
from scorecards.forms import TransferDecisionForm
from scorecards.models import Kpi, OwnershipTransfer
from scorecards.selectors import visible_kpis

deciders_only = role_required(Role.EXECUTIVE, Role.ADMIN)
LOG_PAGE_SIZE = 50
PANEL_SIZE = 5


# --- the agenda -------------------------------------------------------------------------------------------------


def _options(request: HttpRequest, item: agenda.AgendaItem, ctx: dict, bound: DecisionForm | None) -> list[dict]:
    """The decisions this item takes, each with its form (the bound one back with its errors, open)."""
    session, by = ctx["session"], request.membership
    kinds = []
    # The decision's own authority (four eyes included): an owner sees no button on their own KPI.
    ws_id = item.workstream.pk if item.workstream is not None else None
    escalated, filers = ctx["escalated"].get(ws_id, set()), ctx["filers"].get(ws_id, set())
    if item.awaiting and deciding.authority("path_review", by=by, path=item.path, escalated=escalated):
        kinds.append("path")
    if item.workstream is not None and deciding.authority(
        "risk_accept", by=by, workstream=item.workstream, filers=filers
    ):
        kinds.append("risk")
    if deciding.authority("target_change", by=by, kpi=item.kpi):
        kinds.append("target")
    if item.kpi.pk not in ctx["transferring"]:
        kinds.append("transfer")
    if item.workstream is not None and item.path is not None and item.path.state != MitigationPath.State.REJECTED:
        kinds.append("action")
    options = []
    for kind in kinds:
        if bound is not None and bound.kind == kind:
            form = bound
        else:
            form = DECISION_FORMS[kind](
                org=request.org,
                kpi=item.kpi,
                members=ctx["members"],
                initial={"session": session.pk if session else None},
            )
        options.append({"kind": kind, "label": form.label, "form": form, "open": form is bound})
    return options


def _item_context(request: HttpRequest, items: list[agenda.AgendaItem], session: ReviewSession | None) -> dict:
    """What the items' decision forms need, in a few queries for the whole agenda (charts included)."""
    charts = agenda.attach_charts([i.kpi for i in items], request.org.tzinfo)
    for item in items:
        item.chart = charts.get(item.kpi.pk, "")
    ws_ids = [i.workstream.pk for i in items if i.workstream is not None]
    escalated: dict[int, set[int]] = {}
    for ws_id, assignee in Task.objects.filter(kind=Task.Kind.ESCALATION, workstream_id__in=ws_ids).values_list(
        "workstream_id", "assignee_id"
    ):
        escalated.setdefault(ws_id, set()).add(assignee)
    filers: dict[int, set[int]] = {}
    for ws_id, user in MitigationPath.objects.filter(workstream_id__in=ws_ids).values_list("workstream_id", "filed_by"):
        filers.setdefault(ws_id, set()).add(user)
    return {
        "session": session,
        # The facts of the decisions' authority (four eyes), read once for the whole agenda.
        "escalated": escalated,
        "filers": filers,
        "members": list(active_members(request.org)),
        "transferring": {
            t.kpi_id: t
            for t in OwnershipTransfer.objects.filter(
                organization=request.org, kpi_id__in=[i.kpi.pk for i in items], state=OwnershipTransfer.State.PENDING
            ).select_related("to_owner__user")
        },
    }


def _agenda_page(
    request: HttpRequest,
    session: ReviewSession | None = None,
    bound: DecisionForm | None = None,
    forms: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    filter_form = AgendaFilterForm(request.GET, org=request.org, auto_id="agenda-%s")
    team_id = filter_form.team_id()
    items = agenda.agenda(org=request.org, team_id=team_id, session=session)
    ctx = _item_context(request, items, session)
    for i, item in enumerate(items):
        # Plain links between items for keyboards without JavaScript (static/js/review.js adds j and k).
        item.prev_id = items[i - 1].kpi.pk if i else None
        item.next_id = items[i + 1].kpi.pk if i + 1 < len(items) else None
        item.options = _options(
            request, item, ctx, bound if bound is not None and bound.kpi.pk == item.kpi.pk else None
        )
        item.transfer = ctx["transferring"].get(item.kpi.pk)
    running = session or ReviewSession.objects.for_org(request.org).filter(closed_at=None).first()
    context = {
        "items": items,
        "open_count": sum(1 for i in items if not i.decided),
        "filter_form": filter_form,
        "team_id": team_id,
        "session": session,
        "running": running,
        "start_form": SessionStartForm(org=request.org) if running is None else None,
        **(forms or {}),
    }
    if session is not None:
        context.setdefault(
            "attendees_form",
            AttendeesForm(org=request.org, initial={"attendees": [m.pk for m in session.attendees.all()]}),
        )
        context.setdefault("close_form", SessionCloseForm())
        initial = {"minutes": int(session.duration.total_seconds() // 60)}
        if session.scheduled_for:
            initial["scheduled_for"] = timezone.localtime(session.scheduled_for, request.org.tzinfo)
        context.setdefault("schedule_form", SessionScheduleForm(initial=initial, auto_id="schedule-%s"))
        context["attendees"] = selectors.session_attendees(session)
        context["decision_count"] = session.decisions.count()
    return render(request, "escalations/review.html", context, status=status)


@deciders_only
@require_GET
def review_agenda(request: HttpRequest) -> HttpResponse:
    return _agenda_page(request)


def _item_response(
    request: HttpRequest,
    kpi: Kpi,
    session: ReviewSession | None,
    bound: DecisionForm | None = None,
    notice: str = "",
) -> HttpResponse:
    """The one agenda item, redrawn in place after a decision (htmx swaps only 2xx, so a refusal is a 200 too)."""
    items = agenda.agenda(org=request.org, session=session, kpi_ids=[kpi.pk])
    ctx = _item_context(request, items, session)
    item = items[0]
    item.options = _options(request, item, ctx, bound)
    item.transfer = ctx["transferring"].get(kpi.pk)
    return render(
        request, "escalations/review.html#item", {"item": item, "session": session, "notice": notice, "swapped": True}
    )


def _decide(request: HttpRequest, kpi: Kpi, form: DecisionForm) -> str:
    """Carries out the form's decision through its service; returns what to tell the decider."""
    data, by, session = form.cleaned_data, request.membership, form.cleaned_data.get("session")
    ws = Workstream.objects.filter(kpi=kpi, resolved_at=None).first()
    common = {"by": by, "reason": data["reason"], "session": session}
    if form.kind in ("risk", "action", "path") and ws is None:
        raise ValidationError("This KPI has no open episode any more: it recovered or was closed.")
    if form.kind == "path":
        path = ws.paths.filter(state=MitigationPath.State.SUBMITTED).first()
        if path is None:
            raise ValidationError("No path awaits review any more: someone decided on it meanwhile.")
        services.decision_review_path(path=path, approve=data["approve"], expected_by=data["expected_by"], **common)
        return "Path approved: escalation stops." if data["approve"] else "Path rejected: it goes back to the owner."
    if form.kind == "risk":
        services.decision_accept_risk(workstream=ws, until=data["until"], **common)
        return f"Risk accepted until {formats.day(data['until'])}: escalation pauses until then."
    if form.kind == "target":
        services.decision_change_target(
            kpi=kpi,
            target_value=data["target_value"],
            target_by=data["target_by"],
            thresholds=form.thresholds(),
            expected_by=data["expected_by"],
            **common,
        )
        return "Target changed: the KPI is evaluated against it at the next sweep."
    if form.kind == "transfer":
        services.decision_request_transfer(
            kpi=kpi, to_owner=data["to_owner"], expected_by=data["expected_by"], **common
        )
        return f"Transfer to {data['to_owner'].user.name} requested: another executive or admin approves it."
    services.decision_assign_action(
        workstream=ws,
        description=data["description"],
        owner=data["owner"],
        due=data["due"],
        expected_by=data["expected_by"],
        **common,
    )
    return f"Action assigned to {data['owner'].user.name}."


@deciders_only
@require_POST
def review_decide(request: HttpRequest, kpi_id: int) -> HttpResponse:
    """Any decision on a KPI of the agenda, taken in place; `kind` says which."""
    kpi = get_for_org_or_404(request, Kpi.objects.select_related("team", "owner__user", "organization"), kpi_id)
    form_class = DECISION_FORMS.get(request.POST.get("kind", ""))
    if form_class is None:
        messages.error(request, "Pick a decision.")
        return redirect("escalations:review_agenda", org_slug=request.org.slug)
    form = form_class(request.POST, org=request.org, kpi=kpi)
    notice = ""
    if form.is_valid():
        try:
            notice = _decide(request, kpi, form)
        except PermissionDenied as e:
            raise refuse(request, str(e)) from e
        except ValidationError as e:
            apply_errors(form, e)
    session = form.cleaned_data.get("session") if hasattr(form, "cleaned_data") else None
    if request.htmx:
        if notice:
            return _item_response(request, kpi, session, notice=notice)
        return _item_response(request, kpi, session, bound=form)
    if notice:
        messages.success(request, f"{kpi.name}: {notice}")
        target = (
            reverse("escalations:review_session_detail", args=[request.org.slug, session.pk])
            if session
            else reverse("escalations:review_agenda", args=[request.org.slug])
        )
        return redirect(f"{target}#item-{kpi.pk}")
    return _agenda_page(request, session, bound=form, status=422)


# --- sessions ---------------------------------------------------------------------------------------------------


@require_GET
def review_session_list(request: HttpRequest) -> HttpResponse:
    """Every review with its minutes; executives and admins start one here."""
    sessions = selectors.session_list(org=request.org)
    may = services.may_decide(request.membership)
    running = next((s for s in sessions if s.is_open), None)
    return render(
        request,
        "escalations/review_sessions.html",
        {
            "page": Paginator(sessions, 25).get_page(request.GET.get("page")),
            "running": running,
            "may_decide": may,
            "start_form": SessionStartForm(org=request.org) if may and running is None else None,
        },
    )


@deciders_only
@require_POST
def review_session_start(request: HttpRequest) -> HttpResponse:
    form = SessionStartForm(request.POST, org=request.org)
    if form.is_valid():
        try:
            session = review_sessions.review_session_start(
                org=request.org,
                by=request.membership,
                title=form.cleaned_data["title"],
                attendees=form.cleaned_data["attendees"],
            )
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, f"{session.title} started: decisions taken now form its minutes.")
            return redirect("escalations:review_session_detail", org_slug=request.org.slug, session_id=session.pk)
    else:
        messages.error(request, "The review was not started: " + " ".join(form.errors.get("attendees", [])))
    return redirect("escalations:review_session_list", org_slug=request.org.slug)


def _visible(request: HttpRequest):
    return visible_kpis(Kpi.objects.for_org(request.org), request.membership)


def _get_session(request: HttpRequest, session_id: int) -> ReviewSession:
    return get_for_org_or_404(
        request, ReviewSession.objects.select_related("started_by", "closed_by", "organization"), session_id
    )


def _minutes(request: HttpRequest, session: ReviewSession) -> HttpResponse:
    log = list(selectors.decision_list(org=request.org, session=session).filter(kpi__in=_visible(request)))
    return render(
        request,
        "escalations/review_minutes.html",
        {
            "session": session,
            "attendees": selectors.session_attendees(session),
            "decisions": log,
            "outcomes": selectors.outcomes(org=request.org, decisions=log),
            "actions": selectors.session_open_actions(session=session, viewer=request.membership),
            "may_decide": services.may_decide(request.membership),
        },
    )


@require_GET
def review_session_detail(request: HttpRequest, session_id: int) -> HttpResponse:
    """An open session is the agenda being gone through (for those who decide); otherwise its minutes."""
    session = _get_session(request, session_id)
    if session.is_open and services.may_decide(request.membership):
        return _agenda_page(request, session)
    return _minutes(request, session)


@deciders_only
@require_POST
def review_session_attendees(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session(request, session_id)
    form = AttendeesForm(request.POST, org=request.org)
    if form.is_valid():
        try:
            review_sessions.review_session_set_attendees(
                session=session, by=request.membership, attendees=form.cleaned_data["attendees"]
            )
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, "Attendees recorded.")
    else:
        messages.error(request, "Pick at least one attendee.")
    return redirect("escalations:review_session_detail", org_slug=request.org.slug, session_id=session.pk)


@deciders_only
@require_POST
def review_session_schedule(request: HttpRequest, session_id: int) -> HttpResponse:
    """Sets or moves the meeting: the attendees get an invitation (an update, when it moves) by email."""
    session = _get_session(request, session_id)
    form = SessionScheduleForm(request.POST)
    if form.is_valid():
        try:
            calendar.review_session_schedule(
                session=session,
                by=request.membership,
                at=form.cleaned_data["scheduled_for"],
                duration=timedelta(minutes=form.cleaned_data["minutes"]),
            )
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, "Meeting time saved: the attendees get the calendar invitation.")
    else:
        messages.error(request, "Give the date, time and length of the meeting.")
    return redirect("escalations:review_session_detail", org_slug=request.org.slug, session_id=session.pk)


@deciders_only
@require_POST
def review_session_cancel(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session(request, session_id)
    try:
        calendar.review_session_cancel(session=session, by=request.membership)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("escalations:review_session_detail", org_slug=request.org.slug, session_id=session.pk)
    messages.success(request, f"{session.title} cancelled: the attendees' calendars are told.")
    return redirect("escalations:review_session_list", org_slug=request.org.slug)


@deciders_only
@require_POST
def review_session_close(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _get_session(request, session_id)
    form = SessionCloseForm(request.POST)
    if form.is_valid():
        try:
            review_sessions.review_session_close(
                session=session, by=request.membership, summary=form.cleaned_data["summary"]
            )
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            messages.success(request, f"{session.title} closed: its decisions are its minutes.")
    return redirect("escalations:review_session_detail", org_slug=request.org.slug, session_id=session.pk)


@require_GET
def review_session_pack(request: HttpRequest, session_id: int, fmt: str = "pdf") -> HttpResponse:
    """The steering pack as a PDF (scorecard summary, the charts of the KPIs decided on, decisions, open actions),
    a PowerPoint deck (a slide per red KPI) or the red KPIs as a spreadsheet."""
    if fmt not in pack_files.PACK_FORMATS:
        raise Http404("The steering pack comes as pdf, pptx or xlsx.")
    session = _get_session(request, session_id)
    if fmt == "pdf":
        body = pack.render_pack(session=session, viewer=request.membership, base_url=request.build_absolute_uri("/"))
    else:
        body = pack_files.render_pack_as(fmt, session=session, viewer=request.membership)
    response = HttpResponse(body, content_type=pack_files.PACK_FORMATS[fmt])
    stamp = timezone.localtime(session.started_at, request.org.tzinfo)
    # The PDF opens in the browser; a deck or a spreadsheet is a download.
    disposition = "inline" if fmt == "pdf" else "attachment"
    name = f"steering-pack-{request.org.slug}-{stamp:%Y-%m-%d}.{fmt}"
    response["Content-Disposition"] = f'{disposition}; filename="{name}"'
    return response


# --- the decision log -------------------------------------------------------------------------------------------


def _log_page(request: HttpRequest, context: dict, log, panel: bool) -> HttpResponse:
    """The log of an organization, a KPI or a workstream: the full page, or for htmx the panel a page embeds."""
    if panel:
        rows = list(log[:PANEL_SIZE])
        total = log.count() if len(rows) == PANEL_SIZE else len(rows)
        context |= {
            "decisions": rows,
            "total": total,
            "outcomes": selectors.outcomes(org=request.org, decisions=rows),
            "effects": path_effects(org=request.org, decisions=rows),
        }
        return render(request, "escalations/decisions.html#panel", context)
    page = Paginator(log, LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    context |= {
        "page": page,
        "decisions": rows,
        "outcomes": selectors.outcomes(org=request.org, decisions=rows),
        "effects": path_effects(org=request.org, decisions=rows),
    }
    return render(request, "escalations/decisions.html", context)


@require_GET
def decision_log(request: HttpRequest) -> HttpResponse:
    filter_form = DecisionFilterForm(request.GET, org=request.org)
    filters = filter_form.filters()
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter_form": filter_form, "query": query.urlencode(), "scope": "organization"}
    log = selectors.decision_list(org=request.org, **filters).filter(kpi__in=_visible(request))
    if fmt := exports.requested_format(request):
        columns = ["Decided", "KPI", "Kind", "Decided by", "KPI status", "Reason", "Expected by", "Review session"]
        rows = (
            [
                d.decided_at,
                d.kpi.name,
                d.get_kind_display(),
                d.decided_by.name,
                d.get_kpi_status_display(),
                d.reason,
                d.expected_by,
                d.session.title if d.session else "",
            ]
            for d in log
        )
        return exports.export_response(fmt=fmt, name="decisions", columns=columns, rows=rows, tz=request.org.tzinfo)
    return _log_page(request, context, log, panel=False)


@require_GET
def kpi_decisions(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi = get_for_org_or_404(request, _visible(request).select_related("team", "owner__user"), kpi_id)
    context = {"kpi": kpi, "scope": "kpi"}
    return _log_page(request, context, selectors.decision_list(org=request.org, kpi=kpi), panel=bool(request.htmx))


@require_GET
def workstream_decisions(request: HttpRequest, workstream_id: int) -> HttpResponse:
    ws = get_for_org_or_404(request, workstreams(org=request.org), workstream_id)
    context = {"ws": ws, "kpi": ws.kpi, "scope": "workstream"}
    log = selectors.decision_list(org=request.org, workstream=ws)
    return _log_page(request, context, log, panel=bool(request.htmx))


# --- an ownership transfer, decided from the KPI page or its inbox task ------------------------------------------


@require_POST
def transfer_decide(request: HttpRequest, transfer_id: int) -> HttpResponse:
    transfer = get_for_org_or_404(request, OwnershipTransfer, transfer_id)
    form = TransferDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Approve or reject the transfer.")
    else:
        decision, reason = form.cleaned_data["decision"], form.cleaned_data["note"]
        try:
            if decision == "take":
                services.decision_take_transfer(transfer=transfer, by=request.membership, reason=reason)
            else:
                services.decision_transfer(
                    transfer=transfer, by=request.membership, approve=decision == "approve", reason=reason
                )
        except PermissionDenied as e:
            raise refuse(request, str(e)) from e
        except ValidationError as e:
            messages.error(request, " ".join(e.messages))
        else:
            done = {"approve": "Transfer approved", "reject": "Transfer rejected", "take": "You own it now"}[decision]
            messages.success(request, f"{done}; the decision log records it.")
    if request.POST.get("next") == "inbox":  # decided from its task in the inbox
        return redirect("escalations:task_inbox", org_slug=request.org.slug)
    return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=transfer.kpi_id)

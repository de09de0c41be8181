"""The manual values of a KPI (scorecards.manual): the panel on its page (history, the entry form, confirm and reject
in place) and the approver's confirm and reject from the inbox. Here, above the reminders, so that an entry or a
decision brings the KPI's tasks up to date at once."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from escalations.decisions.forms import ManualDecisionForm, ManualValueForm
from escalations.engine import manual_values as engine
from escalations.workstreams.selectors import decision_of
from governance.access import deny, get_for_org_or_404, refuse
from governance.forms import apply_errors
from scorecards import manual as calendar
from scorecards.models import Kpi, ManualKpi, ManualValue
from scorecards.selectors import visible_kpis

# How many ended periods the entry form offers (a correction of an older one is rare and goes through an admin).
PERIODS_OFFERED = 12


def _manual_kpi(request: HttpRequest, kpi_id: int) -> tuple[Kpi, ManualKpi]:
    kpi = get_for_org_or_404(request, Kpi.objects.select_related("owner__user", "organization"), kpi_id)
    manual = ManualKpi.objects.filter(kpi=kpi).select_related("approver__user").first()
    if manual is None:
        raise deny(request, "a manual KPI's page")
    manual.kpi = kpi
    # The KPI's updaters and approvers keep its values even where a restricted scorecard hides it from them.
    named = calendar.may_enter(manual, request.membership) or request.membership in calendar.approvers(manual)
    if not named and not visible_kpis(Kpi.objects.filter(pk=kpi.pk), request.membership).exists():
        raise Http404("No such KPI.")  # as the KPI's page answers where a scorecard hides it
    return kpi, manual


def _periods(manual: ManualKpi, locked: set) -> list[tuple[str, str]]:
    today = timezone.localdate(timezone.now(), manual.organization.tzinfo)
    starts = calendar.recent_periods(manual.period, today, PERIODS_OFFERED)
    return [
        (
            day.isoformat(),
            calendar.period_label(manual.period, day) + (" (confirmed: a correction)" if day in locked else ""),
        )
        for day in starts
    ]


def _panel(
    request: HttpRequest, kpi: Kpi, manual: ManualKpi, form: ManualValueForm | None = None, **notes
) -> HttpResponse:
    values = list(kpi.manual_values.select_related("entered_by", "decided_by"))
    for value in values:
        value.label = calendar.period_label(manual.period, value.period_start)
        if value.state == ManualValue.State.PENDING:
            value.kpi = kpi
            value.authority = calendar.confirm_authority(value, request.membership)
    locked = {v.period_start for v in values if v.state == ManualValue.State.CONFIRMED}
    may_enter = calendar.may_enter(manual, request.membership)
    if may_enter and form is None:
        form = ManualValueForm(periods=_periods(manual, locked))
    context = {
        "kpi": kpi,
        "manual": manual,
        "approver": calendar.approver_words(manual),
        "updaters": calendar.updaters(manual),
        "values": values,
        "form": form if may_enter else None,
        **notes,
    }
    template = "escalations/manual_values.html" + ("#panel" if request.htmx else "")
    # htmx swaps only a 2xx answer: a refused entry comes back as 200 with its errors in the panel.
    refused = notes.get("error") or (form is not None and form.errors)
    status = 422 if refused and not request.htmx else 200
    return render(request, template, context, status=status)


@require_GET
def manual_values(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi, manual = _manual_kpi(request, kpi_id)
    return _panel(request, kpi, manual)


@require_POST
def manual_value_enter(request: HttpRequest, kpi_id: int) -> HttpResponse:
    kpi, manual = _manual_kpi(request, kpi_id)
    if not calendar.may_enter(manual, request.membership):
        raise deny(request, "the KPI's owner and its named updaters")
    locked = set(kpi.manual_values.filter(state=ManualValue.State.CONFIRMED).values_list("period_start", flat=True))
    form = ManualValueForm(request.POST, periods=_periods(manual, locked))
    if not form.is_valid():
        return _panel(request, kpi, manual, form)
    data = form.cleaned_data
    try:
        value = calendar.manual_value_enter(
            kpi=kpi,
            by=request.membership,
            period_start_day=data["period"],
            value=data["value"],
            note=data["note"],
            evidence_url=data["evidence_url"],
            reason=data["reason"],
        )
    except PermissionDenied as e:
        raise refuse(request, str(e)) from e
    except ValidationError as e:
        apply_errors(form, e)
        return _panel(request, kpi, manual, form)
    engine.remind_kpi(manual=manual, actor=request.user)
    label = calendar.period_label(manual.period, value.period_start)
    notice = f"{label}: {value.value:g} entered; it counts once {calendar.approver_words(manual)} confirms it."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=kpi.pk)
    return _panel(request, kpi, manual, notice=notice)


@require_POST
def manual_value_decide(request: HttpRequest, value_id: int) -> HttpResponse:
    value = get_for_org_or_404(request, ManualValue.objects.select_related("kpi"), value_id)
    kpi, manual = _manual_kpi(request, value.kpi_id)
    form = ManualDecisionForm(request.POST)
    notice, error = "", ""
    if not form.is_valid():
        error = "Confirm or reject the value."
    else:
        confirm = form.cleaned_data["decision"] == "confirm"
        try:
            engine.manual_value_decide(
                value=value, by=request.membership, confirm=confirm, reason=form.cleaned_data["reason"]
            )
        except PermissionDenied as e:  # four eyes: never the person who entered it
            raise refuse(request, str(e)) from e
        except ValidationError as e:
            error = " ".join(e.messages)
        else:
            engine.remind_kpi(manual=manual, actor=request.user)
            notice = (
                "Confirmed: the value counts now and its period is locked."
                if confirm
                else "Rejected: the updaters enter it again."
            )
    if request.POST.get("next") == "inbox":
        return _inbox_row(request, notice, error)
    return (
        _panel(request, kpi, manual, notice=notice, error=error) if request.htmx else _back(request, kpi, notice, error)
    )


def _back(request: HttpRequest, kpi: Kpi, notice: str, error: str) -> HttpResponse:
    (messages.error if error else messages.success)(request, error or notice)
    return redirect("scorecards:kpi_detail", org_slug=request.org.slug, kpi_id=kpi.pk)


def _inbox_row(request: HttpRequest, notice: str, error: str) -> HttpResponse:
    """The task's row of the inbox after the decision in place (htmx), or back to the inbox."""
    task_id = request.POST.get("task", "")
    row = (
        decision_of(membership=request.membership, task_id=int(task_id)) if request.htmx and task_id.isdigit() else None
    )
    if row is None:
        (messages.error if error else messages.success)(request, error or notice)
        return redirect("escalations:task_inbox", org_slug=request.org.slug)
    context = {"d": row, "now": timezone.now(), "notice": notice, "error": error, "oob_counts": True}
    return render(request, "escalations/inbox.html#decision-row", context)

"""What a decision changed, in words, for the decision log, the minutes and the steering pack."""

from __future__ import annotations

from datetime import date

from django import template

from escalations.models import Decision, Workstream
from governance import formats
from scorecards.templatetags.kpis import kpi_value

register = template.Library()


def _threshold(value) -> str:
    if isinstance(value, list | tuple):
        return "–".join(_threshold(v) for v in value)
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _day(iso: str | None) -> str:
    if not iso:
        return "no date"
    return formats.day(date.fromisoformat(iso[:10]))


def _target_change(decision: Decision) -> str:
    before, after = decision.payload.get("before", {}), decision.payload.get("after", {})
    unit = decision.kpi.unit
    parts = []
    if (before.get("target_value"), before.get("target_by")) != (after.get("target_value"), after.get("target_by")):
        old = kpi_value(before.get("target_value"), unit)
        new = kpi_value(after.get("target_value"), unit)
        if before.get("target_by") or after.get("target_by"):
            old, new = f"{old} by {_day(before.get('target_by'))}", f"{new} by {_day(after.get('target_by'))}"
        parts.append(f"target {old} → {new}")
    for level in ("warning", "critical"):
        was, now = (before.get("thresholds") or {}).get(level), (after.get("thresholds") or {}).get(level)
        if was != now:
            parts.append(f"{level} {_threshold(was)} → {_threshold(now)}")
    return "; ".join(parts).capitalize()


@register.filter
def decision_change(decision: Decision) -> str:
    """One line: what the decision set in motion (the target's new values, the day a risk is accepted until...)."""
    kind, payload = decision.kind, decision.payload
    if kind == Decision.Kind.TARGET_CHANGED:
        return _target_change(decision)
    if kind == Decision.Kind.RISK_ACCEPTED:
        return f"Escalation paused until {_day(payload.get('until'))}"
    if kind in (Decision.Kind.PATH_APPROVED, Decision.Kind.PATH_REJECTED):
        cause = payload.get("root_cause", "")
        return f"Root cause: {cause}" if cause else ""
    if kind in (Decision.Kind.TRANSFER_REQUESTED, Decision.Kind.TRANSFER_DECIDED):
        owners = f"{payload.get('from_owner', '').split(' <')[0]} → {payload.get('to_owner', '').split(' <')[0]}"
        if kind == Decision.Kind.TRANSFER_REQUESTED:
            return f"Owner {owners}"
        return f"{'Approved' if payload.get('approved') else 'Refused'}: owner {owners}"
    if kind == Decision.Kind.WORKSTREAM_CLOSED:
        resolution = payload.get("resolution", "")
        labels = dict(Workstream.Resolution.choices)
        return labels.get(resolution, resolution)
    if kind == Decision.Kind.REVIEW_NO_IMPACT:
        upstream = payload.get("upstream") or []
        return f"Upstream: {', '.join(upstream)}" if upstream else ""
    if kind in (Decision.Kind.VALUE_CONFIRMED, Decision.Kind.VALUE_REJECTED):
        return f"{payload.get('period', '')}: {payload.get('value', 0):g}"
    if kind == Decision.Kind.ACTION_ASSIGNED:
        owner = payload.get("owner", "").split(" <")[0]
        return f"{payload.get('description', '')} ({owner}, due {_day(payload.get('due'))})"
    return ""


@register.filter
def decision_follow_up(decision: Decision) -> tuple[str, str] | None:
    """(state, text) of the thing the decision made, when it has its own fate: the action, the transfer."""
    if decision.action_id:
        action = decision.action
        if action.done_at:
            return "ok", f"Action done {formats.day(action.done_at, year=False)}"
        if action.overdue_at:
            return "off_track", "Action overdue"
        return "muted", f"Action open, due {formats.day(action.due, year=False)}"
    if decision.transfer_id:
        transfer = decision.transfer
        state = {"approved": "ok", "rejected": "off_track", "cancelled": "muted"}.get(transfer.state, "at_risk")
        return state, f"Transfer {transfer.get_state_display().lower()}"
    return None


@register.filter
def get_outcome(outcomes: dict, pk: int):
    """`outcomes|get_outcome:d.pk`: a decision's Outcome from escalations.decisions.selectors.outcomes."""
    return outcomes.get(pk) if outcomes else None


TONES = {"on_time": "ok", "recovered": "ok", "late": "warn", "due": "warn", "missed": "bad", "open": "muted"}


@register.filter
def outcome_tone(outcome) -> str:
    """The status colour of an outcome (app.css): green on time, amber late or due, red missed."""
    return TONES.get(outcome.state, "muted") if outcome else "muted"

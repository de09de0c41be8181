"""The planned changes as text: one line per created, archived or deleted object and per changed field."""

from __future__ import annotations

from collections.abc import Sequence

from governance.manifest.context import Change


def show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def render_diff(changes: Sequence[Change]) -> str:
    """One line per created, archived or deleted object and per changed field; "No changes." when none."""
    lines = []
    for change in changes:
        label = f"{change.kind} {change.key}"
        note = f" ({change.note})" if change.note else ""
        if change.action == "create":
            lines.append(f"+ {label}{note}")
        elif change.action == "update":
            for name, before, after in change.fields:
                extra = " (ownership transfer)" if name == "owner" and change.kind == "kpi" else note
                lines.append(f"~ {label}: {name} {show(before)} -> {show(after)}{extra}")
        elif change.action in ("archive", "delete"):
            lines.append(f"- {label} ({change.action})")
        elif change.action == "skip":
            lines.append(f"  {label}: not in the manifest, skipped ({change.note})")
    if not any(change.action != "skip" for change in changes):
        lines.insert(0, "No changes.")
    return "\n".join(lines)

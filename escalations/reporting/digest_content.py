"""What a weekly digest says: the scorecard's week of the organization (executives) and each member's own open
items, as the payload its email renders (escalations.notify.formats)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.urls import reverse
from django.utils import timezone

from escalations.models import (
    MitigationAction,
    MitigationPath,
    Task,
    Workstream,
)
from escalations.reporting.digest_slots import Slot, by_zone
from escalations.reporting.health import status_at
from escalations.workstreams import selectors
from governance import formats
from governance.models import Membership, Organization
from scorecards.models import STATUS_SEVERITY, Kpi, Status, StatusChange

LIST_LIMIT = 10  # rows per list in a digest; the rest is counted ("and 4 more")


OPEN_TASKS = (Task.State.OPEN, Task.State.ACKNOWLEDGED)


LIVE_PATHS = (MitigationPath.State.SUBMITTED, MitigationPath.State.APPROVED)


STATUS_ORDER = [Status.ON_TRACK, Status.AT_RISK, Status.OFF_TRACK, Status.STALE, Status.NO_DATA]


def _day(at, tz) -> str:
    return formats.day(at, tz, year=False, weekday=True)


def _limited(rows: list[dict]) -> dict:
    return {"rows": rows[:LIST_LIMIT], "more": max(0, len(rows) - LIST_LIMIT)}


def week_summaries(orgs: list[Organization], slots: dict[str, Slot], now: datetime) -> dict[int, dict]:
    """The scorecard's week of each organization, in six queries for all of them."""
    ids = [o.pk for o in orgs]
    since = by_zone(slots, "since", DateTimeField())
    counts = _status_counts(ids, since)
    net = _net_changes(ids, since, now)
    awaiting, exhausted, stale = _awaiting_review(ids), _exhausted(ids), _stale(ids)
    return {
        o.pk: {
            "counts": _count_rows(counts[o.pk]),
            "changes": _limited(_change_rows(net[o.pk], o)),
            "decisions": _limited(_path_rows(_of(awaiting, o), o) + _exhausted_rows(_of(exhausted, o), o)),
            "stale": _limited(_stale_rows(_of(stale, o), o)),
        }
        for o in orgs
    }


def _status_counts(ids: list[int], since: Case) -> dict[int, dict[str, list[int]]]:
    """Per organization and status: [KPIs in it now, KPIs in it at the start of the week]."""
    now_counts = (
        Kpi.objects.filter(organization__in=ids, archived_at=None)
        .values("organization_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    then_counts = (
        Kpi.objects.filter(organization__in=ids)
        .annotate(since=since)
        .filter(Q(created_at__lte=F("since")) & (Q(archived_at=None) | Q(archived_at__gt=F("since"))))
        .annotate(then=status_at(OuterRef("since")))
        .values("organization_id", "then")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts: dict[int, dict[str, list[int]]] = {i: {s: [0, 0] for s in STATUS_ORDER} for i in ids}
    for row in now_counts:
        counts[row["organization_id"]][row["status"]][0] = row["n"]
    for row in then_counts:
        counts[row["organization_id"]][row["then"]][1] = row["n"]
    return counts


def _net_changes(ids: list[int], since: Case, now: datetime) -> dict[int, dict[int, dict]]:
    """Per organization and KPI, the week's net change: the first change's old status, the last one's new one."""
    changes = (
        StatusChange.objects.filter(organization__in=ids, kpi__archived_at=None, changed_at__lte=now)
        .annotate(since=since)
        .filter(changed_at__gt=F("since"))
        .order_by("changed_at", "id")
        .values("organization_id", "kpi_id", "kpi__name", "kpi__team__name", "old", "new", "changed_at")
    )
    net: dict[int, dict[int, dict]] = defaultdict(dict)
    for row in changes:
        kpi = net[row["organization_id"]].setdefault(row["kpi_id"], dict(row))
        kpi.update(new=row["new"], changed_at=row["changed_at"])
    return net


def _awaiting_review(ids: list[int]) -> list[dict]:
    return list(
        MitigationPath.objects.filter(organization__in=ids, state=MitigationPath.State.SUBMITTED)
        .filter(workstream__resolved_at=None)
        .order_by("filed_at", "id")
        .values("organization_id", "workstream_id", "workstream__kpi__name", "filed_by__name", "filed_at")
    )


def _exhausted(ids: list[int]) -> list[dict]:
    return list(
        Workstream.objects.filter(organization__in=ids, resolved_at=None)
        .exclude(exhausted_at=None)
        .order_by("exhausted_at", "id")
        .values("organization_id", "pk", "kpi__name", "kpi__owner__user__name", "exhausted_at")
    )


def _stale(ids: list[int]) -> list[dict]:
    return list(
        Kpi.objects.filter(organization__in=ids, archived_at=None, status=Status.STALE)
        .order_by("status_since", "name")
        .values("organization_id", "pk", "name", "owner__user__name", "last_measured_at")
    )


def _count_rows(counts: dict[str, list[int]]) -> list[dict]:
    labels = dict(Status.choices)
    return [
        {"status": st, "label": labels[st], "now": counts[st][0], "before": counts[st][1]}
        for st in STATUS_ORDER
        if counts[st][0] or counts[st][1]
    ]


def _change_rows(net: dict[int, dict], org: Organization) -> list[dict]:
    labels = dict(Status.choices)
    rank = {s: i for i, s in enumerate(STATUS_SEVERITY)}
    moved = sorted((c for c in net.values() if c["old"] != c["new"]), key=lambda c: (rank[c["new"]], c["kpi__name"]))
    return [
        {
            "kpi": c["kpi__name"],
            "team": c["kpi__team__name"],
            "old": c["old"],
            "old_label": labels[c["old"]],
            "new": c["new"],
            "new_label": labels[c["new"]],
            "when": _day(c["changed_at"], org.tzinfo),
            "url": reverse("scorecards:kpi_detail", args=[org.slug, c["kpi_id"]]),
        }
        for c in moved
    ]


def _of(rows: list[dict], org: Organization) -> list[dict]:
    return [r for r in rows if r["organization_id"] == org.pk]


def _path_rows(rows: list[dict], org: Organization) -> list[dict]:
    return [
        {
            "kpi": r["workstream__kpi__name"],
            "what": f"Mitigation path awaiting review since {_day(r['filed_at'], org.tzinfo)}",
            "who": r["filed_by__name"],
            "url": reverse("escalations:workstream_detail", args=[org.slug, r["workstream_id"]]),
        }
        for r in rows
    ]


def _exhausted_rows(rows: list[dict], org: Organization) -> list[dict]:
    return [
        {
            "kpi": r["kpi__name"],
            "what": f"Escalation exhausted on {_day(r['exhausted_at'], org.tzinfo)}, no approved path",
            "who": r["kpi__owner__user__name"],
            "url": reverse("escalations:workstream_detail", args=[org.slug, r["pk"]]),
        }
        for r in rows
    ]


def _stale_rows(rows: list[dict], org: Organization) -> list[dict]:
    return [
        {
            "kpi": r["name"],
            "who": r["owner__user__name"],
            "since": _day(r["last_measured_at"], org.tzinfo) if r["last_measured_at"] else "never",
            "url": reverse("scorecards:kpi_detail", args=[org.slug, r["pk"]]),
        }
        for r in rows
    ]


def owner_items(recipients: list[Membership], orgs: dict[int, Organization], now: datetime) -> dict[int, dict]:
    """Each recipient's open tasks, open actions and own KPIs in an open episode, in three queries for all (and
    what happens next in those episodes, in a few more)."""
    ids = [m.pk for m in recipients]
    episodes = _episode_rows(ids)
    # What happens next in each, as the pages say it (selectors.what_next).
    upcoming = selectors.what_next_of(
        list(
            Workstream.objects.filter(pk__in=[r["pk"] for r in episodes]).select_related(
                "organization", "kpi__owner__user", "kpi__team__lead__user"
            )
        )
    )
    found: dict[int, dict[str, list]] = defaultdict(lambda: {"tasks": [], "actions": [], "episodes": []})
    for r in _task_rows(ids):
        found[r["assignee_id"]]["tasks"].append(_task_item(r, orgs[r["organization_id"]], now))
    for r in _action_rows(ids):
        found[r["owner_id"]]["actions"].append(_action_item(r, orgs[r["organization_id"]], now))
    for r in episodes:
        found[r["kpi__owner_id"]]["episodes"].append(_episode_item(r, orgs[r["organization_id"]], upcoming[r["pk"]]))
    return {
        m: {
            **{k: _limited(v) for k, v in lists.items()},
            "overdue": sum(1 for k in ("tasks", "actions") for row in lists[k] if row["overdue"]),
            "counts": {k: len(v) for k, v in lists.items()},
        }
        for m, lists in found.items()
    }


def _task_rows(ids: list[int]) -> QuerySet[Task]:
    return (
        Task.objects.filter(assignee__in=ids, state__in=OPEN_TASKS)
        .order_by("due_at", "id")
        .values("assignee_id", "organization_id", "kind", "kpi__name", "workstream_id", "due_at")
    )


def _action_rows(ids: list[int]) -> QuerySet[MitigationAction]:
    return (
        MitigationAction.objects.filter(
            owner__in=ids, done_at=None, path__state__in=LIVE_PATHS, path__workstream__resolved_at=None
        )
        .order_by("due", "id")
        .values("owner_id", "organization_id", "description", "due", "path__state", "path__workstream_id")
        .annotate(kpi=F("path__workstream__kpi__name"))
    )


def _episode_rows(ids: list[int]) -> list[dict]:
    latest_path = MitigationPath.objects.filter(workstream=OuterRef("pk")).order_by("-filed_at", "-id")
    return list(
        Workstream.objects.filter(kpi__owner__in=ids, resolved_at=None)
        .annotate(path_state=Subquery(latest_path.values("state")[:1]))
        .order_by("opened_at", "id")
        .values("kpi__owner_id", "organization_id", "pk", "kind", "severity", "kpi__name", "opened_at", "path_state")
    )


def _task_item(r: dict, org: Organization, now: datetime) -> dict:
    url = (
        reverse("escalations:workstream_detail", args=[org.slug, r["workstream_id"]])
        if r["workstream_id"]
        else reverse("escalations:task_inbox", args=[org.slug])
    )
    return {
        "what": dict(Task.Kind.choices).get(r["kind"], r["kind"]),
        "kpi": r["kpi__name"],
        "due": _day(r["due_at"], org.tzinfo),
        "overdue": r["due_at"] < now,
        "url": url,
    }


def _action_item(r: dict, org: Organization, now: datetime) -> dict:
    return {
        "what": r["description"],
        "kpi": r["kpi"],
        "due": _day(r["due"], org.tzinfo),
        "overdue": r["due"] < timezone.localtime(now, org.tzinfo).date(),
        "proposed": r["path__state"] == MitigationPath.State.SUBMITTED,
        "url": reverse("escalations:workstream_detail", args=[org.slug, r["path__workstream_id"]]),
    }


PATH_STATES = {
    MitigationPath.State.SUBMITTED: "path awaiting review",
    MitigationPath.State.APPROVED: "path approved",
    MitigationPath.State.REJECTED: "path rejected, a new one is due",
}


def _episode_item(r: dict, org: Organization, upcoming: selectors.WhatNext) -> dict:
    return {
        "kpi": r["kpi__name"],
        "severity": r["severity"],
        "severity_label": dict(Status.choices).get(r["severity"], r["severity"]),
        "opened": _day(r["opened_at"], org.tzinfo),
        "path": PATH_STATES.get(r["path_state"], "no path filed yet"),
        "next": upcoming.text,
        "url": reverse("escalations:workstream_detail", args=[org.slug, r["pk"]]),
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def digest_of(m: Membership, org: Organization, slot: Slot, summary: dict | None, mine: dict | None) -> dict | None:
    """Everything one message says, as plain data (it is stored as JSON until the email goes out)."""
    if summary is None and mine is None:
        return None
    tz = org.tzinfo
    week_start = slot.send_at.astimezone(tz)
    lines = []
    if summary:
        counts = ", ".join(
            f"{c['now']} {c['label'].lower()}" + (f" ({c['now'] - c['before']:+d})" if c["now"] != c["before"] else "")
            for c in summary["counts"]
        )
        changed = len(summary["changes"]["rows"]) + summary["changes"]["more"]
        decisions = len(summary["decisions"]["rows"]) + summary["decisions"]["more"]
        lines.append(f"KPIs: {counts or 'none tracked'}.")
        lines.append(f"{_plural(changed, 'KPI')} changed status this week; {decisions} awaiting a decision.")
    if mine:
        n = mine["counts"]
        parts = [_plural(n["tasks"], "open task"), _plural(n["actions"], "action"), _plural(n["episodes"], "KPI")]
        lines.append(
            f"Yours: {parts[0]}, {parts[1]}, {parts[2]} in an open episode"
            + (f"; {mine['overdue']} overdue." if mine["overdue"] else ".")
        )
    subject = f"Weekly digest, week of {formats.day(week_start, year=False)}"
    if summary and summary["decisions"]["rows"]:
        decisions = len(summary["decisions"]["rows"]) + summary["decisions"]["more"]
        subject += f": {decisions} awaiting a decision"
    elif mine and mine["overdue"]:
        subject += f": {mine['overdue']} overdue"
    url = reverse("escalations:governance_health" if summary else "escalations:task_inbox", args=[org.slug])
    return {
        "v": 1,
        "subject": subject,
        "summary_text": "\n".join(lines),
        "url": url,
        "name": m.user.name,
        "org": org.name,
        "timezone": org.timezone,
        "week": f"{week_start.day} {week_start:%B} {week_start.year}",
        "since": f"{_day(slot.since, tz)} {slot.since.astimezone(tz):%H:%M}",
        "summary": summary,
        "mine": mine,
        "links": {
            "health": reverse("escalations:governance_health", args=[org.slug]),
            "scorecards": reverse("scorecards:kpi_list", args=[org.slug]),
            "inbox": reverse("escalations:task_inbox", args=[org.slug]),
            "settings": reverse("escalations:notification_settings", args=[org.slug]),
        },
    }

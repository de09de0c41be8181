"""The weekly digest: every Monday at 08:00 in the organization's timezone, an executive gets the scorecard's week
(status counts now and a week ago, what changed, what awaits a decision, what is stale) and anyone with open items
gets theirs (tasks, actions, own KPIs in an episode); an executive who owns items gets both in one message.

Once per recipient and week, guaranteed by the database: the dedup key names the organization's local ISO week,
under Notification's unique (dedup_key, channel), so two beats, a redelivered task or a retried batch never write
a second digest. A sweep that runs late (workers down over the send time) writes that week's digest once, when it
runs; a week missed entirely is not replayed. Who gets one is decided as of the send time (members by then, items
opened by then), so a task arriving on Wednesday does not start a "weekly" digest on Wednesday.

The in-app notification carries a short summary; the email row carries the digest's content as JSON in its body,
rendered when the delivery sweep sends it (`digest_email.render_email`), so a retried send is the same message. The
member switches either off on the notification settings page (kind "weekly_digest").
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import reduce
from operator import and_

from django.db import transaction
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Cast, Concat
from django.urls import reverse
from django.utils import timezone

from escalations import selectors
from escalations.digest_email import DIGEST_KIND
from escalations.health import status_at
from escalations.models import (
    MitigationAction,
    MitigationPath,
    Notification,
    NotificationPreference,
    Task,
    Workstream,
)
from governance.models import Membership, Organization, Role
from scorecards.models import STATUS_SEVERITY, Kpi, Status, StatusChange

# When it is due, in each organization's own timezone: Monday (date.weekday()) at 08:00 local time.
SEND_WEEKDAY = 0
SEND_TIME = time(8, 0)
SUMMARY_ROLES = (Role.EXECUTIVE,)  # who gets the scorecard's week; everyone may get their own items
ORG_BATCH = 50  # organizations per transaction
LIST_LIMIT = 10  # rows per list in a digest; the rest is counted ("and 4 more")
OPEN_TASKS = (Task.State.OPEN, Task.State.ACKNOWLEDGED)
LIVE_PATHS = (MitigationPath.State.SUBMITTED, MitigationPath.State.APPROVED)
STATUS_ORDER = [Status.ON_TRACK, Status.AT_RISK, Status.OFF_TRACK, Status.STALE, Status.NO_DATA]


@dataclass(frozen=True)
class Slot:
    """One week's digest in one timezone."""

    week: str  # the ISO week of the local send date, "2026-W49": the dedup key's week
    send_at: datetime  # UTC
    since: datetime  # the previous week's send time (167 or 169 hours earlier across a DST change)


def slot_at(tz: tzinfo, now: datetime) -> Slot | None:
    """The digest due at `now` in `tz`: this week's, once its send time has passed; None before it (on Monday at
    07:00 last week's is history, not due)."""
    today = now.astimezone(tz).date()
    day = today - timedelta(days=(today.weekday() - SEND_WEEKDAY) % 7)
    send_at = _send_moment(day, tz)
    if now < send_at:
        return None
    year, week, _ = day.isocalendar()
    return Slot(f"{year}-W{week:02d}", send_at, _send_moment(day - timedelta(days=7), tz))


def _send_moment(day: date, tz: tzinfo) -> datetime:
    # Wall-clock time in the zone, then UTC, so the digest stays at 08:00 local across DST changes.
    return datetime.combine(day, SEND_TIME, tzinfo=tz).astimezone(UTC)


def dedup_key(org_id: int, week: str, membership_id: int) -> str:
    return f"{org_id}:digest:{week}:{membership_id}"


# --- the sweep -----------------------------------------------------------------------------------------------


def send_digests(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Writes every digest due now (in-app and email rows; `deliver_notifications` sends the emails). Returns how
    many digests it wrote; a constant number of queries per batch of organizations."""
    now = now or timezone.now()
    slots = _due_slots(now, org_id)
    if not slots:
        return 0
    pending = _candidates(slots)
    if org_id:
        pending = pending.filter(organization_id=org_id)
    org_ids = sorted(set(pending.order_by().values_list("organization_id", flat=True)))
    written = 0
    for start in range(0, len(org_ids), ORG_BATCH):
        with transaction.atomic():
            # Two sweeps split the organizations instead of both computing the same digests (the dedup key is what
            # guarantees once). NO KEY: rows that reference the organization can still be inserted meanwhile.
            claimed = list(
                Organization.objects.filter(pk__in=org_ids[start : start + ORG_BATCH])
                .order_by("pk")
                .select_for_update(skip_locked=True, no_key=True)
            )
            if claimed:
                written += _write_batch(claimed, slots, now)
    return written


def _due_slots(now: datetime, org_id: int | None) -> dict[str, Slot]:
    """Timezone name -> its due slot, for the zones the organizations use (one query, then Python per zone)."""
    zones = Organization.objects.order_by().values_list("timezone", flat=True).distinct()
    if org_id:
        zones = zones.filter(pk=org_id)
    slots = {name: slot_at(zoneinfo.ZoneInfo(name), now) for name in zones}
    return {name: slot for name, slot in slots.items() if slot is not None}


def _by_zone(slots: dict[str, Slot], attr: str, output_field) -> Case:
    """A per-row value that depends on the organization's timezone: its slot's `attr`."""
    return Case(
        *(When(organization__timezone=name, then=Value(getattr(s, attr))) for name, s in slots.items()),
        output_field=output_field,
    )


def _candidates(slots: dict[str, Slot]) -> QuerySet[Membership]:
    """Members due a digest: active by the send time, an executive or with open items opened by then, not sent
    this week's yet, and not opted out of it on every channel."""
    send_at = OuterRef("send_at")
    tasks = Task.objects.filter(assignee=OuterRef("pk"), state__in=OPEN_TASKS, created_at__lte=send_at)
    actions = MitigationAction.objects.filter(
        owner=OuterRef("pk"),
        done_at=None,
        path__state__in=LIVE_PATHS,
        path__workstream__resolved_at=None,
        path__filed_at__lte=send_at,
    )
    episodes = Workstream.objects.filter(kpi__owner=OuterRef("pk"), resolved_at=None, opened_at__lte=send_at)
    sent = Notification.objects.filter(dedup_key=OuterRef("digest_key"), kind=DIGEST_KIND)
    off = NotificationPreference.objects.filter(membership=OuterRef("pk"), kind=DIGEST_KIND, enabled=False)
    all_off = reduce(and_, (Q(Exists(off.filter(channel=c))) for c in Notification.Channel.values))
    key = Concat(
        Cast("organization_id", CharField()),
        Value(":digest:"),
        _by_zone(slots, "week", CharField()),
        Value(":"),
        Cast("pk", CharField()),
        output_field=CharField(),
    )
    return (
        Membership.objects.filter(organization__timezone__in=list(slots), is_active=True, user__is_active=True)
        .annotate(send_at=_by_zone(slots, "send_at", DateTimeField()), digest_key=key)
        .filter(created_at__lte=F("send_at"))
        .filter(Q(role__in=SUMMARY_ROLES) | Exists(tasks) | Exists(actions) | Exists(episodes))
        .exclude(Exists(sent))
        .exclude(all_off)
    )


def _write_batch(orgs: list[Organization], slots: dict[str, Slot], now: datetime) -> int:
    by_id = {o.pk: o for o in orgs}
    recipients = list(_candidates(slots).filter(organization__in=orgs).select_related("user").order_by("pk"))
    if not recipients:
        return 0
    summary_orgs = [by_id[i] for i in sorted({m.organization_id for m in recipients if m.role in SUMMARY_ROLES})]
    summaries = _summaries(summary_orgs, slots, now) if summary_orgs else {}
    items = _owner_items(recipients, by_id, now)
    off = set(
        NotificationPreference.objects.filter(membership__in=recipients, kind=DIGEST_KIND, enabled=False).values_list(
            "membership_id", "channel"
        )
    )
    rows, written = [], 0
    for m in recipients:
        org = by_id[m.organization_id]
        slot = slots[org.timezone]
        digest = _digest(m, org, slot, summaries.get(org.pk) if m.role in SUMMARY_ROLES else None, items.get(m.pk))
        if digest is None:
            continue
        written += 1
        for channel in Notification.Channel.values:
            if (m.pk, channel) in off:
                continue
            in_app = channel == Notification.Channel.IN_APP
            rows.append(
                Notification(
                    organization_id=org.pk,
                    recipient=m,
                    kind=DIGEST_KIND,
                    channel=channel,
                    dedup_key=dedup_key(org.pk, slot.week, m.pk),
                    subject=digest["subject"][:200],
                    body=digest["summary_text"],
                    payload={} if in_app else digest,
                    url=digest["url"],
                    created_at=now,
                    delivered_at=now if in_app else None,
                    next_attempt_at=None if in_app else now,
                )
            )
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    return written


# --- what a digest says ---------------------------------------------------------------------------------------


def _day(at: datetime | date, tz: tzinfo) -> str:
    local = at.astimezone(tz) if isinstance(at, datetime) else at
    return f"{local:%a} {local.day} {local:%b}"


def _limited(rows: list[dict]) -> dict:
    return {"rows": rows[:LIST_LIMIT], "more": max(0, len(rows) - LIST_LIMIT)}


def _summaries(orgs: list[Organization], slots: dict[str, Slot], now: datetime) -> dict[int, dict]:
    """The scorecard's week of each organization, in six queries for all of them."""
    ids = [o.pk for o in orgs]
    tz_of = {o.pk: o.tzinfo for o in orgs}
    slug = {o.pk: o.slug for o in orgs}
    since = _by_zone(slots, "since", DateTimeField())
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
    changes = (
        StatusChange.objects.filter(organization__in=ids, kpi__archived_at=None, changed_at__lte=now)
        .annotate(since=since)
        .filter(changed_at__gt=F("since"))
        .order_by("changed_at", "id")
        .values("organization_id", "kpi_id", "kpi__name", "kpi__team__name", "old", "new", "changed_at")
    )
    awaiting = (
        MitigationPath.objects.filter(organization__in=ids, state=MitigationPath.State.SUBMITTED)
        .filter(workstream__resolved_at=None)
        .order_by("filed_at", "id")
        .values("organization_id", "workstream_id", "workstream__kpi__name", "filed_by__name", "filed_at")
    )
    exhausted = (
        Workstream.objects.filter(organization__in=ids, resolved_at=None)
        .exclude(exhausted_at=None)
        .order_by("exhausted_at", "id")
        .values("organization_id", "pk", "kpi__name", "kpi__owner__user__name", "exhausted_at")
    )
    stale = (
        Kpi.objects.filter(organization__in=ids, archived_at=None, status=Status.STALE)
        .order_by("status_since", "name")
        .values("organization_id", "pk", "name", "owner__user__name", "last_measured_at")
    )

    counts: dict[int, dict[str, list[int]]] = {i: {s: [0, 0] for s in STATUS_ORDER} for i in ids}
    for row in now_counts:
        counts[row["organization_id"]][row["status"]][0] = row["n"]
    for row in then_counts:
        counts[row["organization_id"]][row["then"]][1] = row["n"]

    net: dict[int, dict[int, dict]] = defaultdict(dict)  # org -> kpi -> first old, last new
    for row in changes:
        # The week's net change: the first row's old status, the last row's new one.
        kpi = net[row["organization_id"]].setdefault(row["kpi_id"], dict(row))
        kpi.update(new=row["new"], changed_at=row["changed_at"])
    labels = dict(Status.choices)
    rank = {s: i for i, s in enumerate(STATUS_SEVERITY)}
    out: dict[int, dict] = {}
    for i in ids:
        tz, s = tz_of[i], slug[i]
        moved = sorted(
            (c for c in net[i].values() if c["old"] != c["new"]), key=lambda c: (rank[c["new"]], c["kpi__name"])
        )
        out[i] = {
            "counts": [
                {"status": st, "label": labels[st], "now": counts[i][st][0], "before": counts[i][st][1]}
                for st in STATUS_ORDER
                if counts[i][st][0] or counts[i][st][1]
            ],
            "changes": _limited(
                [
                    {
                        "kpi": c["kpi__name"],
                        "team": c["kpi__team__name"],
                        "old": c["old"],
                        "old_label": labels[c["old"]],
                        "new": c["new"],
                        "new_label": labels[c["new"]],
                        "when": _day(c["changed_at"], tz),
                        "url": reverse("scorecards:kpi_detail", args=[s, c["kpi_id"]]),
                    }
                    for c in moved
                ]
            ),
            "decisions": _limited(
                [
                    {
                        "kpi": r["workstream__kpi__name"],
                        "what": f"Mitigation path awaiting review since {_day(r['filed_at'], tz)}",
                        "who": r["filed_by__name"],
                        "url": reverse("workstream_detail", args=[s, r["workstream_id"]]),
                    }
                    for r in awaiting
                    if r["organization_id"] == i
                ]
                + [
                    {
                        "kpi": r["kpi__name"],
                        "what": f"Escalation exhausted on {_day(r['exhausted_at'], tz)}, no approved path",
                        "who": r["kpi__owner__user__name"],
                        "url": reverse("workstream_detail", args=[s, r["pk"]]),
                    }
                    for r in exhausted
                    if r["organization_id"] == i
                ]
            ),
            "stale": _limited(
                [
                    {
                        "kpi": r["name"],
                        "who": r["owner__user__name"],
                        "since": _day(r["last_measured_at"], tz) if r["last_measured_at"] else "never",
                        "url": reverse("scorecards:kpi_detail", args=[s, r["pk"]]),
                    }
                    for r in stale
                    if r["organization_id"] == i
                ]
            ),
        }
    return out


def _owner_items(recipients: list[Membership], orgs: dict[int, Organization], now: datetime) -> dict[int, dict]:
    """Each recipient's open tasks, open actions and own KPIs in an open episode, in three queries for all (and
    what happens next in those episodes, in a few more)."""
    ids = [m.pk for m in recipients]
    tasks = (
        Task.objects.filter(assignee__in=ids, state__in=OPEN_TASKS)
        .order_by("due_at", "id")
        .values("assignee_id", "organization_id", "kind", "kpi__name", "workstream_id", "due_at")
    )
    actions = (
        MitigationAction.objects.filter(
            owner__in=ids, done_at=None, path__state__in=LIVE_PATHS, path__workstream__resolved_at=None
        )
        .order_by("due", "id")
        .values("owner_id", "organization_id", "description", "due", "path__state", "path__workstream_id")
        .annotate(kpi=F("path__workstream__kpi__name"))
    )
    latest_path = MitigationPath.objects.filter(workstream=OuterRef("pk")).order_by("-filed_at", "-id")
    episodes = (
        Workstream.objects.filter(kpi__owner__in=ids, resolved_at=None)
        .annotate(path_state=Subquery(latest_path.values("state")[:1]))
        .order_by("opened_at", "id")
        .values("kpi__owner_id", "organization_id", "pk", "kind", "severity", "kpi__name", "opened_at", "path_state")
    )
    episodes = list(episodes)
    # What happens next in each, as the pages say it (selectors.what_next).
    upcoming = selectors.what_next_of(
        list(
            Workstream.objects.filter(pk__in=[r["pk"] for r in episodes]).select_related(
                "organization", "kpi__owner__user", "kpi__team__lead__user"
            )
        )
    )
    kinds, severities = dict(Task.Kind.choices), dict(Status.choices)
    path_states = {
        MitigationPath.State.SUBMITTED: "path awaiting review",
        MitigationPath.State.APPROVED: "path approved",
        MitigationPath.State.REJECTED: "path rejected, a new one is due",
    }
    found: dict[int, dict[str, list]] = defaultdict(lambda: {"tasks": [], "actions": [], "episodes": []})
    for r in tasks:
        org = orgs[r["organization_id"]]
        url = (
            reverse("workstream_detail", args=[org.slug, r["workstream_id"]])
            if r["workstream_id"]
            else reverse("task_inbox", args=[org.slug])
        )
        found[r["assignee_id"]]["tasks"].append(
            {
                "what": kinds.get(r["kind"], r["kind"]),
                "kpi": r["kpi__name"],
                "due": _day(r["due_at"], org.tzinfo),
                "overdue": r["due_at"] < now,
                "url": url,
            }
        )
    for r in actions:
        org = orgs[r["organization_id"]]
        found[r["owner_id"]]["actions"].append(
            {
                "what": r["description"],
                "kpi": r["kpi"],
                "due": _day(r["due"], org.tzinfo),
                "overdue": r["due"] < timezone.localtime(now, org.tzinfo).date(),
                "proposed": r["path__state"] == MitigationPath.State.SUBMITTED,
                "url": reverse("workstream_detail", args=[org.slug, r["path__workstream_id"]]),
            }
        )
    for r in episodes:
        org = orgs[r["organization_id"]]
        found[r["kpi__owner_id"]]["episodes"].append(
            {
                "kpi": r["kpi__name"],
                "severity": r["severity"],
                "severity_label": severities.get(r["severity"], r["severity"]),
                "opened": _day(r["opened_at"], org.tzinfo),
                "path": path_states.get(r["path_state"], "no path filed yet"),
                "next": upcoming[r["pk"]].text,
                "url": reverse("workstream_detail", args=[org.slug, r["pk"]]),
            }
        )
    return {
        m: {
            **{k: _limited(v) for k, v in lists.items()},
            "overdue": sum(1 for k in ("tasks", "actions") for row in lists[k] if row["overdue"]),
            "counts": {k: len(v) for k, v in lists.items()},
        }
        for m, lists in found.items()
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _digest(m: Membership, org: Organization, slot: Slot, summary: dict | None, mine: dict | None) -> dict | None:
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
    subject = f"Weekly digest, week of {week_start.day} {week_start:%b}"
    if summary and summary["decisions"]["rows"]:
        decisions = len(summary["decisions"]["rows"]) + summary["decisions"]["more"]
        subject += f": {decisions} awaiting a decision"
    elif mine and mine["overdue"]:
        subject += f": {mine['overdue']} overdue"
    url = reverse("governance_health" if summary else "task_inbox", args=[org.slug])
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
            "health": reverse("governance_health", args=[org.slug]),
            "scorecards": reverse("scorecards:kpi_list", args=[org.slug]),
            "inbox": reverse("task_inbox", args=[org.slug]),
            "settings": reverse("notification_settings", args=[org.slug]),
        },
    }

"""Episodes (SEMANTICS.md sections 2 and 4): a batch of status changes opens, raises, reopens and resolves
workstreams, and an upstream KPI's open episode holds the escalation of those downstream (inhibition)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Case, DateTimeField, Value, When

from dependencies.models import Dependency
from escalations.engine.blocks import BREACH, OPEN, SEVERITY, Counts, Journal, event, mitigated_among, save_fields, when
from escalations.engine.resolver import policies_for
from escalations.engine.timing import Policy
from escalations.models import (
    Notification,
    Task,
    Workstream,
)
from governance.models import Membership, User
from scorecards.models import Kpi, Status, StatusChange


class Episodes:
    """The episodes a batch of status changes touches, held in memory while its changes apply one by one, exactly
    as the rules say: the open and recently recovered workstreams of the batch's KPIs, the open ones waiting on an
    episode the batch may resolve, and the open ones of the KPIs directly upstream of any the batch may hold
    (inhibition). load() reads them in a constant number of queries, flush() writes the outcome in bulk.

    A batch holds one change per KPI (process_status_changes), so each episode is opened, raised, reopened or
    resolved at most once in it (a hold or a release by an upstream may come on top): its tasks can be written
    after the fact, and nobody was told about an episode earlier in the batch that resolves it."""

    def __init__(self, now: datetime, kpis: dict[int, Kpi]) -> None:
        self.now, self.kpis = now, kpis
        self.journal = Journal(now)
        self.open: dict[int, Workstream] = {}  # KPI id -> its open workstream
        self.known: set[int] = set()  # the KPIs whose open workstream (or its absence) `open` tells
        self.upstreams: dict[int, list[int]] = defaultdict(list)  # KPI id -> its direct upstream KPIs
        # id(workstream) -> (it, the upstream episode it waits on or None) for every hold the batch set or read.
        self.holds: dict[int, tuple[Workstream, Workstream | None]] = {}
        self.recovered: dict[int, Workstream] = {}  # KPI id -> its newest episode recovered within keep_for
        self.mitigated: set[int] = set()
        self.policies: dict[int, tuple[str, Policy]] = {}
        self.told: dict[int, list[Membership]] = {}  # workstream id -> everyone notified about it
        self.resolving: dict[int, Workstream] = {}  # workstream id -> an open one the batch resolves
        self.created: list[Workstream] = []
        self.changed: dict[int, tuple[Workstream, set[str]]] = {}  # id(workstream) -> (it, fields to save)
        self.cancelled: list[tuple[Workstream, datetime]] = []  # resolved: their open tasks end then
        self.refreshed: list[tuple[Workstream, datetime]] = []  # fresh data: their data-freshness tasks are done

    # --- reading ---

    def load(self, changes: list[StatusChange]) -> None:
        ids = {c.kpi_id for c in changes}
        self._know(Workstream.objects.filter(kpi_id__in=ids, resolved_at=None), ids)
        starting = [c for c in changes if c.new in SEVERITY and c.kpi_id not in self.open]
        if starting:
            # A breach within keep_for of a recovery continues that episode (the newest such one).
            since = {c.kpi_id: c.changed_at - self.kpis[c.kpi_id].keep_for for c in starting}
            for ws in Workstream.objects.filter(
                kpi_id__in=since, resolution=Workstream.Resolution.RECOVERED, resolved_at__gte=min(since.values())
            ).order_by("resolved_at", "id"):
                if ws.resolved_at >= since[ws.kpi_id]:
                    self.recovered[ws.kpi_id] = self._attach(ws)
            if self.recovered:
                self.mitigated = mitigated_among(list(self.recovered.values()))
            fresh = [self.kpis[c.kpi_id] for c in starting if c.kpi_id not in self.recovered]
            if fresh:
                self.policies = policies_for(fresh)
        resolving = [self.open[c.kpi_id] for c in changes if c.new == Status.ON_TRACK and c.kpi_id in self.open]
        held = self.load_resolving(resolving)
        self.load_upstreams({c.kpi_id for c in starting} | held)

    def load_resolving(self, resolving: list[Workstream]) -> set[int]:
        """Who was told about each episode about to resolve, and the open episodes waiting on them (their KPIs are
        returned: a release looks at their other upstreams)."""
        if not resolving:
            return set()
        for ws in resolving:
            self._know([ws], {ws.kpi_id})
        by_pk = self.resolving = {ws.pk: ws for ws in resolving}
        # Episodes that recovered while held let go of an upstream episode that ends: a breach within keep_for
        # reopens them, and a hold on an episode already over would keep them from ever escalating again.
        Workstream.objects.filter(waiting_on_id__in=by_pk).exclude(resolved_at=None).update(waiting_on=None)
        pairs = list(
            Notification.objects.filter(workstream_id__in=by_pk).values_list("workstream_id", "recipient_id").distinct()
        )
        people = Membership.objects.in_bulk({person for _, person in pairs})
        for ws_id, person in sorted(pairs):
            self.told.setdefault(ws_id, []).append(people[person])
        waiting = set()
        for ws in Workstream.objects.filter(resolved_at=None, waiting_on_id__in=by_pk).select_related(
            "organization", "kpi"
        ):
            ws = self._know([ws], {ws.kpi_id})[0]
            self.holds[id(ws)] = (ws, by_pk[ws.waiting_on_id])
            waiting.add(ws.kpi_id)
        return waiting

    def load_upstreams(self, kpi_ids: set[int]) -> None:
        """The direct upstream KPIs of `kpi_ids` and their open episodes, for upstream_episode."""
        if not kpi_ids:
            return
        edges = Dependency.objects.filter(downstream_id__in=kpi_ids).values_list("downstream_id", "upstream_id")
        for down, up in edges:
            self.upstreams[down].append(up)
        unknown = {up for down in kpi_ids for up in self.upstreams.get(down, ())} - self.known
        if unknown:
            self._know(
                Workstream.objects.filter(kpi_id__in=unknown, resolved_at=None).select_related("organization", "kpi"),
                unknown,
            )

    def _know(self, workstreams: Iterable[Workstream], kpi_ids: set[int]) -> list[Workstream]:
        """Records the open workstreams of `kpi_ids`; one already in memory stays the one used."""
        found = []
        for ws in workstreams:
            held = self.open.get(ws.kpi_id)
            if held is None or held.pk != ws.pk:
                held = self.open[ws.kpi_id] = self._attach(ws)
            found.append(held)
        self.known |= kpi_ids
        return found

    def _attach(self, ws: Workstream) -> Workstream:
        if ws.kpi_id in self.kpis:  # the locked row, with its team, organization and owner already loaded
            ws.kpi = self.kpis[ws.kpi_id]
            ws.organization = ws.kpi.organization
        return ws

    # --- the rules, one change at a time ---

    def apply(self, change: StatusChange, counts: Counts) -> None:
        kpi = self.kpis[change.kpi_id]
        current = self.open.get(kpi.pk)
        if change.new == Status.ON_TRACK:
            if current is not None:
                self.resolve(current, change.changed_at, Workstream.Resolution.RECOVERED, "", None)
                counts.resolved += 1
            return
        if change.new not in SEVERITY:  # no_data: nothing to mitigate
            return
        if current is not None:
            self._raise(current, change)
        elif kpi.pk in self.recovered:
            self._reopen(self.recovered[kpi.pk], change)
        else:
            self._open(kpi, change)
            counts.opened += 1

    def _open(self, kpi: Kpi, change: StatusChange) -> None:
        key, policy = self.policies[kpi.pk]
        stale = change.new == Status.STALE
        ws = Workstream(
            organization=kpi.organization,
            kpi=kpi,
            kind=Workstream.Kind.DATA_FRESHNESS if stale else Workstream.Kind.MITIGATION,
            severity=change.new,
            opened_at=change.changed_at,
            opened_by_change=change,
            policy_key=key,
            policy=policy.as_json(),
            next_escalation_at=change.changed_at + policy.mitigation_due if policy.levels else None,
        )
        self.created.append(ws)
        self.open[kpi.pk] = ws
        due = change.changed_at + policy.mitigation_due
        kind = Task.Kind.DATA_FRESHNESS if stale else Task.Kind.MITIGATION
        self.journal.task(ws, kind, kpi.owner, due, "0:0")
        what = "has no fresh data" if stale else f"is {change.get_new_display().lower()}"
        self.journal.event(ws, change.changed_at, "opened", f"{kpi.name} {what}: {change.reason}")
        ask = "Restore its data" if stale else "File a mitigation path (root cause, actions with owners and dates)"
        self.journal.notify(
            ws,
            [kpi.owner],
            kind,
            f"{kpi.name} {what}",
            f"{change.reason}\n\n{ask} by {when(due, kpi.organization)}.",
            "opened",
        )
        self.inhibit(ws, change.changed_at)

    def _raise(self, ws: Workstream, change: StatusChange) -> None:
        """A further change within the episode: off_track raises the severity; at_risk or stale never lowers it."""
        if change.new in BREACH and ws.kind in (Workstream.Kind.DATA_FRESHNESS, Workstream.Kind.PREVENTIVE):
            ws.kind = Workstream.Kind.MITIGATION  # data is back, or the expected impact came: the episode is a breach
        if SEVERITY[change.new] > SEVERITY[ws.severity]:
            ws.severity = change.new
        self._save(ws, "kind", "severity")
        self.journal.event(ws, change.changed_at, "status", f"Now {change.get_new_display().lower()}: {change.reason}")
        if change.new == Status.STALE:
            owner = ws.kpi.owner
            self.journal.task(ws, Task.Kind.DATA_FRESHNESS, owner, change.changed_at + timedelta(days=1), "stale")
        else:  # fresh data arrived: restoring it is done
            self.refreshed.append((ws, change.changed_at))

    def _reopen(self, ws: Workstream, change: StatusChange) -> None:
        """A breach within keep_for of a recovery continues that episode; escalation resumes where it stood."""
        ws.resolved_at, ws.resolution, ws.severity = None, "", change.new
        ws.next_escalation_at = None if ws.pk in self.mitigated or not ws.policy.get("levels") else change.changed_at
        self._save(ws, "resolved_at", "resolution", "severity", "next_escalation_at")
        self.open[ws.kpi_id] = ws
        if ws.waiting_on_id in self.resolving:  # still held by an upstream episode that resolves later in the batch
            self.holds[id(ws)] = (ws, self.resolving[ws.waiting_on_id])
        self.journal.event(
            ws, change.changed_at, "reopened", f"Breached again within keep_for of the recovery: {change.reason}"
        )
        self.inhibit(ws, change.changed_at)

    def resolve(self, ws: Workstream, at: datetime, resolution: str, reason: str, actor: User | None) -> None:
        ws.resolved_at, ws.resolution, ws.resolution_reason = at, resolution, reason
        ws.next_escalation_at, ws.closed_by = None, actor
        self._save(ws, "resolved_at", "resolution", "resolution_reason", "next_escalation_at", "closed_by")
        if self.open.get(ws.kpi_id) is ws:
            del self.open[ws.kpi_id]
        self.cancelled.append((ws, at))
        label = Workstream.Resolution(resolution).label
        self.journal.event(ws, at, "resolved", f"{label}{': ' + reason if reason else ''}", actor)
        # Everyone who heard about the episode hears how it ended.
        self.journal.notify(
            ws,
            self.told.get(ws.pk, []),
            "resolved",
            f"{ws.kpi.name}: {label.lower()}",
            reason or label,
            f"resolved:{int(at.timestamp())}",
        )
        self.release_downstream(ws, at)

    # --- inhibition (SEMANTICS.md section 4) ---

    def upstream_episode(self, kpi_id: int, opened_at: datetime) -> Workstream | None:
        """The oldest open workstream of a direct upstream KPI that opened no later than `opened_at`."""
        found = [self.open[up] for up in self.upstreams.get(kpi_id, ()) if up in self.open]
        return min((ws for ws in found if ws.opened_at <= opened_at), key=self._age, default=None)

    def _age(self, ws: Workstream) -> tuple:
        # Ids order episodes opened at the same time; one opened in this batch gets a higher id than any stored.
        return (ws.opened_at, 0, ws.pk) if ws.pk is not None else (ws.opened_at, 1, self.created.index(ws))

    def _waits_on(self, ws: Workstream, upstream: Workstream) -> bool:
        if id(ws) in self.holds:
            holder = self.holds[id(ws)][1]
            return holder is upstream or (holder is not None and holder.pk is not None and holder.pk == upstream.pk)
        return ws.waiting_on_id is not None and ws.waiting_on_id == upstream.pk

    def inhibit(self, ws: Workstream, at: datetime) -> None:
        """A workstream opened within an upstream KPI's open episode waits for it: its escalation is held."""
        upstream = self.upstream_episode(ws.kpi_id, ws.opened_at)
        if upstream is None or self._waits_on(ws, upstream):
            return
        self.holds[id(ws)] = (ws, upstream)
        self._save(ws, "waiting_on")
        self.journal.event(
            ws,
            at,
            "waiting_on_upstream",
            f"Escalation waits on upstream: {upstream.kpi.name} has an open episode since "
            f"{when(upstream.opened_at, ws.organization)}; it starts when that one resolves",
        )

    def release_downstream(self, upstream: Workstream, at: datetime) -> None:
        """An upstream episode resolved at `at`: each open workstream waiting on it starts escalating then, its next
        step due at the later of its own time and `at`, unless another upstream episode still holds it."""
        for ws, holder in list(self.holds.values()):
            if holder is not upstream or self.open.get(ws.kpi_id) is not ws:
                continue
            self.inhibit(ws, at)  # another open upstream episode that it opened within holds it on
            if self.holds[id(ws)][1] is not upstream:
                continue
            self.holds[id(ws)] = (ws, None)
            if ws.next_escalation_at is not None:
                ws.next_escalation_at = max(ws.next_escalation_at, at)
            self._save(ws, "waiting_on", "next_escalation_at")
            due = ws.next_escalation_at
            then = f"; the next step is due {when(due, ws.organization)}" if due else ""
            self.journal.event(
                ws, at, "upstream_resolved", f"Upstream {upstream.kpi.name} resolved: escalation runs again{then}"
            )

    # --- writing ---

    def _save(self, ws: Workstream, *fields: str) -> None:
        # Only the fields a rule changed are written: a concurrent escalation sweep owns level, pass and the rest.
        self.changed.setdefault(id(ws), (ws, set()))[1].update(fields)

    def flush(self) -> None:
        # A hold on an episode opened in this batch is written once that one has its id.
        later = set()
        for ws, holder in self.holds.values():
            if holder is not None and holder.pk is None:
                later.add(id(ws))
            else:
                ws.waiting_on_id = holder.pk if holder else None
        created = {id(ws) for ws in self.created}
        Workstream.objects.bulk_create(self.created)
        for key in later:
            ws, holder = self.holds[key]
            ws.waiting_on_id = holder.pk
        groups: dict[tuple[str, ...], list[Workstream]] = defaultdict(list)
        for key, (ws, fields) in self.changed.items():
            if key in created:  # inserted with its fields, but for a hold on another new one
                fields = fields & ({"waiting_on"} if key in later else set())
            if fields:
                groups[tuple(sorted(fields))].append(ws)
        for fields, workstreams in sorted(groups.items()):
            save_fields(workstreams, fields)
        # After the workstreams' rows: an escalation sweep that held one has committed its tasks by now.
        if self.cancelled:
            Task.objects.filter(workstream_id__in=[ws.pk for ws, _ in self.cancelled], state__in=OPEN).update(
                state=Task.State.CANCELLED, done_at=_at_of(self.cancelled)
            )
        if self.refreshed:
            Task.objects.filter(
                workstream_id__in=[ws.pk for ws, _ in self.refreshed], kind=Task.Kind.DATA_FRESHNESS, state__in=OPEN
            ).update(state=Task.State.DONE, done_at=_at_of(self.refreshed))
        self.journal.flush()


def _at_of(pairs: list[tuple[Workstream, datetime]]) -> Case:
    """done_at per workstream in one UPDATE: a CASE over the workstreams, grouped by time."""
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for ws, at in pairs:
        by_time[at].append(ws.pk)
    return Case(
        *(When(workstream_id__in=ids, then=Value(at)) for at, ids in by_time.items()), output_field=DateTimeField()
    )


def resolve(ws: Workstream, at: datetime, resolution: str, reason: str, actor: User | None, now: datetime) -> None:
    """Ends the episode at `at` (an executive's decision; recoveries are resolved by process_status_changes). `ws`
    is locked, with its organization and KPI owner loaded."""
    episodes = Episodes(now, {})
    episodes.load_upstreams(episodes.load_resolving([ws]))
    episodes.resolve(ws, at, resolution, reason, actor)
    episodes.flush()


def upstream_episode(kpi_id: int, opened_at: datetime) -> Workstream | None:
    """The oldest open workstream of a direct upstream KPI that opened no later than `opened_at`."""
    return (
        Workstream.objects.filter(
            resolved_at=None, opened_at__lte=opened_at, kpi__downstream_edges__downstream_id=kpi_id
        )
        .select_related("kpi")
        .order_by("opened_at", "id")
        .first()
    )


def inhibit(ws: Workstream, at: datetime) -> None:
    """A workstream opened within an upstream KPI's open episode waits for it: its escalation is held. (One
    workstream now, as a dependency review's answer opens it; process_status_changes holds a batch's at once.)"""
    upstream = upstream_episode(ws.kpi_id, ws.opened_at)
    if upstream is None or ws.waiting_on_id == upstream.pk:
        return
    ws.waiting_on = upstream
    ws.save(update_fields=["waiting_on"])
    event(
        ws,
        at,
        "waiting_on_upstream",
        f"Escalation waits on upstream: {upstream.kpi.name} has an open episode since "
        f"{when(upstream.opened_at, ws.organization)}; it starts when that one resolves",
    )

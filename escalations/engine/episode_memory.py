"""What a batch of status changes holds in memory (Episodes builds on it): the episodes its changes touch, read
in a constant number of queries, and the rows their rules change, written in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Case, DateTimeField, Value, When

from dependencies.models import Dependency
from escalations.engine.blocks import OPEN, SEVERITY, Journal, mitigated_among, save_fields
from escalations.engine.resolver import policies_for
from escalations.engine.timing import Policy
from escalations.models import (
    Notification,
    Task,
    Workstream,
)
from governance.models import Membership
from scorecards.models import Kpi, Status, StatusChange


class EpisodeMemory:
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

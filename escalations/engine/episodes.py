"""Episodes (SEMANTICS.md sections 2 and 4): a batch of status changes opens, raises, reopens and resolves
workstreams, and an upstream KPI's open episode holds the escalation of those downstream (inhibition)."""

from __future__ import annotations

from datetime import datetime, timedelta

from escalations.engine.blocks import BREACH, SEVERITY, Counts, event
from escalations.engine.episode_memory import EpisodeMemory
from escalations.models import (
    Task,
    Workstream,
)
from governance import formats
from governance.models import User
from scorecards.models import Kpi, Status, StatusChange


class Episodes(EpisodeMemory):
    """The rules, applied to one status change at a time, on the episodes an EpisodeMemory holds; and inhibition
    (SEMANTICS.md section 4): an episode opened within an upstream KPI's open episode waits for it."""

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
            f"{change.reason}\n\n{ask} by {formats.when(due, kpi.organization.tzinfo)}.",
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
            f"{formats.when(upstream.opened_at, ws.organization.tzinfo)}; it starts when that one resolves",
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
            then = f"; the next step is due {formats.when(due, ws.organization.tzinfo)}" if due else ""
            self.journal.event(
                ws, at, "upstream_resolved", f"Upstream {upstream.kpi.name} resolved: escalation runs again{then}"
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
        f"{formats.when(upstream.opened_at, ws.organization.tzinfo)}; it starts when that one resolves",
    )

"""Writes of the scorecards app; each records its own audit event."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.access import Authority, decision_authority, decision_reason
from governance.models import Membership, User
from governance.services.audit import audit_log, snapshot
from scorecards.leavers import readdress_declined
from scorecards.models import (
    CheckIn,
    KeyResult,
    Kpi,
    KpiSchedule,
    ManualKpi,
    Objective,
    OwnershipTransfer,
    Period,
)

# Fields an admin or the owner may change on the KPI page; `owner` is deliberately absent.
KPI_SETTINGS = [
    "name",
    "description",
    "team",
    "unit",
    "direction",
    "aggregate_fn",
    "aggregate_window",
    "formula",
    "target_value",
    "target_by",
    "baseline_value",
    "baseline_at",
    "thresholds",
    "cadence",
    "stale_after",
    "evaluate_every",
    "pending_for",
    "keep_for",
    "recovery_margin",
    "surge_change",
    "surge_window",
    "forecast",
    "escalation",
    "data_source",
]


def owned_kpis_blocker(membership: Membership) -> str:
    names = list(Kpi.objects.filter(owner=membership, archived_at=None).order_by("name").values_list("name", flat=True))
    if not names:
        return ""
    return f"{membership.user.name} still owns {len(names)} KPI(s): {', '.join(names)}. Transfer them first."


@transaction.atomic
def kpi_create(*, actor: User, **fields) -> Kpi:
    kpi = Kpi(**fields)
    kpi.full_clean()
    kpi.save()
    KpiSchedule.objects.create(kpi=kpi, organization=kpi.organization, next_evaluation_at=timezone.now())  # next sweep
    audit_log(
        org=kpi.organization,
        actor=actor,
        verb="kpi.created",
        obj=kpi,
        after=snapshot(kpi, ["key", "owner", *KPI_SETTINGS]),
    )
    return kpi


@transaction.atomic
def kpi_update(*, kpi: Kpi, actor: User, **fields) -> Kpi:
    if "owner" in fields:
        raise ValidationError({"owner": "The owner is locked; request an ownership transfer."})
    stored = Kpi.objects.select_for_update(of=("self",)).get(pk=kpi.pk)
    before = snapshot(stored, KPI_SETTINGS)
    for name, value in fields.items():
        setattr(kpi, name, value)
    kpi.full_clean()
    kpi.save()
    if (stored.archived_at is None) != (kpi.archived_at is None):
        # An archived KPI leaves the sweep's schedule; restored, it is evaluated at the next sweep.
        due = {"next_evaluation_at": None if kpi.archived_at else timezone.now()}
        KpiSchedule.objects.update_or_create(
            kpi=kpi, defaults=due, create_defaults={"organization": kpi.organization, **due}
        )
    after = snapshot(kpi, KPI_SETTINGS)
    if after != before:
        changed = [k for k in KPI_SETTINGS if before[k] != after[k]]
        audit_log(
            org=kpi.organization,
            actor=actor,
            verb="kpi.updated",
            obj=kpi,
            before={k: before[k] for k in changed},
            after={k: after[k] for k in changed},
        )
    return kpi


def kpi_schedule_evaluation(*, kpi: Kpi) -> None:
    """Asks for an evaluation at the next sweep (new thresholds, say) without moving the evaluate_every grid."""
    KpiSchedule.objects.update_or_create(
        kpi=kpi,
        defaults={"needs_evaluation": True},
        create_defaults={"organization": kpi.organization, "needs_evaluation": True},
    )


# --- ownership transfers ------------------------------------------------------------------------


def transfer_authority(transfer: OwnershipTransfer, membership: Membership) -> Authority:
    """May `membership` approve or refuse the transfer? Another admin or executive than the requester; for a
    leaver's KPI (scorecards.leavers), also the person it is addressed to, who accepts or declines the ownership."""
    if not transfer.from_owner.is_active:
        # The identity provider asked, not the admin whose token it used: nobody deciding has an interest in it.
        return decision_authority(kind="transfer_decide", by=membership, also={transfer.to_owner_id})
    return decision_authority(kind="transfer_decide", by=membership, interested={transfer.requested_by_id})


@transaction.atomic
def ownership_transfer_request(
    *, kpi: Kpi, requester: Membership, to_owner: Membership, reason: str
) -> OwnershipTransfer:
    if not decision_authority(kind="transfer_request", by=requester, also={kpi.owner_id}):
        raise PermissionDenied("Only the owner, an admin or an executive may request a transfer.")
    if to_owner.organization_id != kpi.organization_id or not to_owner.is_active:
        raise ValidationError({"to_owner": "The new owner must be an active member of this organization."})
    if to_owner.pk == kpi.owner_id:
        raise ValidationError({"to_owner": f"{to_owner.user.name} already owns this KPI."})
    if not reason.strip():
        raise ValidationError({"reason": "Say why the ownership should change."})
    if OwnershipTransfer.objects.filter(kpi=kpi, state=OwnershipTransfer.State.PENDING).exists():
        raise ValidationError("A transfer of this KPI is already waiting for approval.")
    transfer = OwnershipTransfer.objects.create(
        organization=kpi.organization,
        kpi=kpi,
        from_owner_id=kpi.owner_id,
        to_owner=to_owner,
        reason=reason.strip(),
        requested_by=requester.user,
    )
    audit_log(
        org=kpi.organization,
        actor=requester.user,
        verb="kpi.transfer_requested",
        obj=kpi,
        before={"owner": str(kpi.owner)},
        after={"owner": str(to_owner), "reason": transfer.reason},
    )
    return transfer


def _apply_owner(*, kpi: Kpi, to_owner: Membership, actor: User | None, reason: str, verb: str) -> None:
    before = str(kpi.owner)
    # Guarded update: the owner changes only if nobody changed it since this decision began.
    if Kpi.objects.filter(pk=kpi.pk, owner_id=kpi.owner_id).update(owner=to_owner) != 1:
        raise ValidationError("The KPI changed owner meanwhile; ask for a new transfer.")
    kpi.owner = to_owner
    audit_log(
        org=kpi.organization,
        actor=actor,
        verb=verb,
        obj=kpi,
        before={"owner": before},
        after={"owner": str(to_owner), "reason": reason},
    )


@transaction.atomic
def ownership_transfer_decide(
    *, transfer: OwnershipTransfer, decider: Membership, approve: bool, note: str = ""
) -> OwnershipTransfer:
    """Approve or refuse, with a reason. The decision log's row is written by its caller, the escalations app's
    decision_transfer (this app may not import that one): pages and the API call that."""
    transfer = OwnershipTransfer.objects.select_for_update().select_related("kpi__owner__user").get(pk=transfer.pk)
    if transfer.state != OwnershipTransfer.State.PENDING:
        raise ValidationError(f"This transfer is already {transfer.get_state_display().lower()}.")
    allowed = transfer_authority(transfer, decider)
    if not allowed:
        raise PermissionDenied(allowed.refusal)
    note = decision_reason(note)
    if approve and transfer.kpi.owner_id != transfer.from_owner_id:
        raise ValidationError("The KPI changed owner since this request; ask for a new transfer.")
    transfer.state = OwnershipTransfer.State.APPROVED if approve else OwnershipTransfer.State.REJECTED
    transfer.decided_by = decider.user
    transfer.decided_at = timezone.now()
    transfer.decision_note = note
    transfer.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
    if approve:
        _apply_owner(
            kpi=transfer.kpi,
            to_owner=transfer.to_owner,
            actor=decider.user,
            reason=transfer.reason,
            verb="kpi.owner_changed",
        )
    else:
        audit_log(
            org=transfer.organization,
            actor=decider.user,
            verb="kpi.transfer_rejected",
            obj=transfer.kpi,
            after={"to_owner": str(transfer.to_owner), "note": transfer.decision_note},
        )
        if not transfer.from_owner.is_active:
            readdress_declined(transfer=transfer, actor=decider.user)
    return transfer


@transaction.atomic
def ownership_transfer_cancel(*, transfer: OwnershipTransfer, actor: Membership) -> OwnershipTransfer:
    if transfer.state != OwnershipTransfer.State.PENDING:
        raise ValidationError(f"This transfer is already {transfer.get_state_display().lower()}.")
    if not transfer.from_owner.is_active:  # withdrawn, it would leave the KPI with an owner who left
        raise ValidationError("The owner left: decline the transfer instead, and the next admin is asked.")
    if actor.user_id != transfer.requested_by_id and not decision_authority(kind="transfer_decide", by=actor):
        raise PermissionDenied("Only the requester, an admin or an executive may cancel a transfer.")
    transfer.state = OwnershipTransfer.State.CANCELLED
    transfer.decided_by = actor.user
    transfer.decided_at = timezone.now()
    transfer.save(update_fields=["state", "decided_by", "decided_at"])
    audit_log(org=transfer.organization, actor=actor.user, verb="kpi.transfer_cancelled", obj=transfer.kpi)
    return transfer


@transaction.atomic
def ownership_transfer_direct(*, kpi: Kpi, to_owner: Membership, actor: User | None, reason: str) -> OwnershipTransfer:
    """For the manifest applied by an admin's token or the CLI: recorded as an approved transfer."""
    if to_owner.organization_id != kpi.organization_id or not to_owner.is_active:
        raise ValidationError({"owner": "The new owner must be an active member of this organization."})
    OwnershipTransfer.objects.filter(kpi=kpi, state=OwnershipTransfer.State.PENDING).update(
        state=OwnershipTransfer.State.CANCELLED, decided_at=timezone.now(), decision_note="superseded: " + reason
    )
    now = timezone.now()
    transfer = OwnershipTransfer.objects.create(
        organization=kpi.organization,
        kpi=kpi,
        from_owner_id=kpi.owner_id,
        to_owner=to_owner,
        reason=reason,
        state=OwnershipTransfer.State.APPROVED,
        requested_by=actor or to_owner.user,
        requested_at=now,
        decided_by=actor,
        decided_at=now,
    )
    _apply_owner(kpi=kpi, to_owner=to_owner, actor=actor, reason=reason, verb="kpi.owner_changed")
    return transfer


# --- OKRs ---------------------------------------------------------------------------------------


OBJECTIVE_FIELDS = ["key", "title", "owner", "team", "period_start", "period_end", "parent"]


@transaction.atomic
def objective_create(*, actor: User, **fields) -> Objective:
    objective = Objective(**fields)
    objective.full_clean()
    objective.save()
    audit_log(
        org=objective.organization,
        actor=actor,
        verb="objective.created",
        obj=objective,
        after=snapshot(objective, ["key", "title", "owner", "team", "period_start", "period_end", "parent"]),
    )
    return objective


@transaction.atomic
def objective_update(*, objective: Objective, actor: User, **fields) -> Objective:
    before = snapshot(Objective.objects.select_for_update(of=("self",)).get(pk=objective.pk), OBJECTIVE_FIELDS)
    for name, value in fields.items():
        setattr(objective, name, value)
    chain, node = [objective.title], objective.parent
    while node is not None:  # walk the stored parents: an objective must not end up above itself
        chain.append(node.title)
        if node.pk == objective.pk:
            raise ValidationError({"parent": f"That would make a cycle: {' → '.join(chain)}."})
        node = node.parent
    objective.full_clean()
    objective.save()
    after = snapshot(objective, OBJECTIVE_FIELDS)
    if after != before:
        audit_log(
            org=objective.organization, actor=actor, verb="objective.updated", obj=objective, before=before, after=after
        )
    return objective


@transaction.atomic
def key_result_create(*, actor: User, objective: Objective, **fields) -> KeyResult:
    key_result = KeyResult(organization=objective.organization, objective=objective, **fields)
    key_result.full_clean()
    key_result.save()
    audit_log(
        org=objective.organization,
        actor=actor,
        verb="key_result.created",
        obj=key_result,
        after=snapshot(key_result, ["key", "title", "objective", "kpi", "owner", "start", "target"]),
    )
    return key_result


@transaction.atomic
def key_result_check_in(*, key_result: KeyResult, by: Membership, value: float, note: str = "") -> CheckIn:
    if key_result.kpi_id:
        raise ValidationError("This key result follows its KPI; its data arrives by itself.")
    if by.pk != key_result.owner_id:
        raise PermissionDenied("Only the key result's owner checks in values.")
    check_in = CheckIn.objects.create(
        organization=key_result.organization, key_result=key_result, value=value, note=note.strip(), by=by.user
    )
    before = key_result.current
    key_result.current = value
    key_result.save(update_fields=["current"])
    audit_log(
        org=key_result.organization,
        actor=by.user,
        verb="key_result.checked_in",
        obj=key_result,
        before={"current": before},
        after={"current": value, "note": check_in.note},
    )
    return check_in


# --- manual KPIs (values entered by people: scorecards.manual) ---

# A manual KPI's cadence when the manifest names none: one period (its stale_after is then two periods).
PERIOD_LENGTH = {
    Period.WEEKLY: timedelta(days=7),
    Period.MONTHLY: timedelta(days=31),
    Period.QUARTERLY: timedelta(days=92),
}


def manual_kpi_set(
    *,
    kpi: Kpi,
    actor: User | None,
    period: str | None,
    updaters: list[Membership] = (),
    approver: Membership | None = None,
    approver_role: str = "",
) -> ManualKpi | None:
    """Declares the KPI manual (or, with `period` None, not any more; its values stay on record). The manifest is
    the only writer; it has checked that the approver is not an updater."""
    stored = ManualKpi.objects.filter(kpi=kpi).first()
    before = _manual_form(stored) if stored else None
    if period is None:
        if stored is not None:
            stored.delete()
            audit_log(org=kpi.organization, actor=actor, verb="kpi.manual_removed", obj=kpi, before=before)
        return None
    manual, _ = ManualKpi.objects.update_or_create(
        kpi=kpi,
        defaults={
            "organization_id": kpi.organization_id,
            "period": period,
            "approver": approver,
            "approver_role": "" if approver else approver_role,
        },
    )
    manual.updaters.set(updaters)
    after = _manual_form(manual)
    if after != before:
        audit_log(org=kpi.organization, actor=actor, verb="kpi.manual_set", obj=kpi, before=before, after=after)
    return manual


def _manual_form(manual: ManualKpi) -> dict:
    return {
        "period": manual.period,
        "updaters": sorted(m.user.email.lower() for m in manual.updaters.select_related("user")),
        "approver": manual.approver.user.email.lower() if manual.approver_id else f"role:{manual.approver_role}",
    }

"""A leaver the identity provider deactivated (governance.identity, SCIM) still owns KPIs: each gets an ownership
transfer request to the KPI team's lead, or to an admin when the lead is the leaver or there is none, so that
nothing is left ownerless and nothing changes hands without someone accepting it. A declined one is addressed to
the next admin at once, so a leaver's KPI always has a transfer waiting (escalations shows and escalates it)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from governance.models import Membership, Role, User
from governance.services.audit import audit_log
from scorecards.models import Kpi, OwnershipTransfer


def _successor(kpi: Kpi, leaver: Membership, declined: set[int] = frozenset()) -> Membership | None:
    """The team's lead, else the first admin, then executive, who has not declined this KPI yet."""
    lead = kpi.team.lead
    if lead is not None and lead.is_active and lead.pk != leaver.pk and lead.pk not in declined:
        return lead
    deciders = Membership.objects.for_org(kpi.organization).filter(
        role__in=[Role.ADMIN, Role.EXECUTIVE], is_active=True
    )
    admins_first = Case(When(role=Role.ADMIN, then=Value(0)), default=Value(1), output_field=IntegerField())
    return (
        deciders.exclude(pk__in=[leaver.pk, *declined])
        .select_related("user")
        .order_by(admins_first, "created_at", "pk")
        .first()
    )


def _request(kpi: Kpi, leaver: Membership, to_owner: Membership, actor: User | None, reason: str) -> OwnershipTransfer:
    transfer = OwnershipTransfer.objects.create(
        organization=kpi.organization,
        kpi=kpi,
        from_owner=leaver,
        to_owner=to_owner,
        reason=reason,
        requested_by=actor or to_owner.user,
    )
    audit_log(
        org=kpi.organization,
        actor=actor,
        verb="kpi.transfer_requested",
        obj=kpi,
        before={"owner": str(leaver)},
        after={"owner": str(to_owner), "reason": reason},
    )
    return transfer


def request_transfers_of_leaver(*, membership: Membership, actor: User | None) -> list[str]:
    """One pending transfer per KPI the leaver owns (an existing pending one stands); what was requested, as text."""
    requested = []
    kpis = Kpi.objects.for_org(membership.organization).filter(owner=membership, archived_at=None)
    for kpi in kpis.select_related("team__lead__user", "organization").order_by("name"):
        if OwnershipTransfer.objects.filter(kpi=kpi, state=OwnershipTransfer.State.PENDING).exists():
            continue
        to_owner = _successor(kpi, membership)
        # None: the leaver was the last active admin or executive; the deactivation's audit event says so.
        if to_owner is None:
            requested.append(f"{kpi.key}: nobody to take it (no other active admin or executive); reactivate an admin")
            continue
        reason = f"{membership.user.name} left (deactivated by the identity provider); accept ownership of {kpi.name}."
        _request(kpi, membership, to_owner, actor, reason)
        requested.append(f"{kpi.key} -> {to_owner.user.email}")
    return requested


def readdress_declined(*, transfer: OwnershipTransfer, actor: User) -> OwnershipTransfer | None:
    """A leaver's transfer was declined: the next admin (then executive) who has not declined this KPI is asked;
    when everyone has, the one who declined first is asked again. None when the KPI changed hands meanwhile."""
    kpi = Kpi.objects.select_related("team__lead__user", "organization").get(pk=transfer.kpi_id)
    leaver = transfer.from_owner
    if kpi.owner_id != leaver.pk or kpi.archived_at is not None:
        return None
    declines = OwnershipTransfer.objects.filter(
        kpi=kpi, from_owner=leaver, state=OwnershipTransfer.State.REJECTED
    ).order_by("decided_at", "pk")
    deciders = Membership.objects.for_org(kpi.organization).filter(user_id__in=[d.decided_by_id for d in declines])
    declined = {d.to_owner_id for d in declines} | set(deciders.values_list("pk", flat=True))
    to_owner = _successor(kpi, leaver, declined) or next((d.to_owner for d in declines if d.to_owner.is_active), None)
    if to_owner is None:
        return None
    reason = (
        f"{leaver.user.name} left (deactivated by the identity provider); {transfer.to_owner.user.name} declined "
        f"ownership of {kpi.name}. Accept it, or decline so the next admin is asked."
    )
    return _request(kpi, leaver, to_owner, actor, reason)


def take_over(*, transfer: OwnershipTransfer, by: Membership) -> OwnershipTransfer:
    """Someone the leaver's transfer was escalated to takes the KPI themselves: the request to the addressee is
    withdrawn (audited) and one to them is made, for them to accept. The addressee's own request as it is."""
    if transfer.from_owner.is_active:
        raise ValidationError("Only a leaver's KPI is taken over; ask for a transfer instead.")
    if by.pk == transfer.to_owner_id:
        return transfer
    transfer.state = OwnershipTransfer.State.CANCELLED
    transfer.decided_by, transfer.decided_at = by.user, timezone.now()
    transfer.decision_note = f"{by.user.name} took it over."
    transfer.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
    audit_log(org=transfer.organization, actor=by.user, verb="kpi.transfer_cancelled", obj=transfer.kpi)
    kpi = Kpi.objects.select_related("organization").get(pk=transfer.kpi_id)
    reason = f"{transfer.from_owner.user.name} left; {by.user.name} takes ownership of {kpi.name}."
    return _request(kpi, transfer.from_owner, by, by.user, reason)

"""A leaver the identity provider deactivated (governance.identity, SCIM) still owns KPIs: each gets an ownership
transfer request to the KPI team's lead, or to an admin when the lead is the leaver or there is none, so that
nothing is left ownerless and nothing changes hands without someone accepting it."""

from __future__ import annotations

from governance.models import Membership, Role, User
from governance.services.audit import audit_log
from scorecards.models import Kpi, OwnershipTransfer


def _successor(kpi: Kpi, leaver: Membership) -> Membership | None:
    lead = kpi.team.lead
    if lead is not None and lead.is_active and lead.pk != leaver.pk:
        return lead
    admins = Membership.objects.for_org(kpi.organization).filter(role=Role.ADMIN, is_active=True)
    return admins.exclude(pk=leaver.pk).select_related("user").order_by("created_at", "pk").first()


def request_transfers_of_leaver(*, membership: Membership, actor: User | None) -> list[str]:
    """One pending transfer per KPI the leaver owns (an existing pending one stands); what was requested, as text."""
    requested = []
    kpis = Kpi.objects.for_org(membership.organization).filter(owner=membership, archived_at=None)
    for kpi in kpis.select_related("team__lead__user", "organization").order_by("name"):
        if OwnershipTransfer.objects.filter(kpi=kpi, state=OwnershipTransfer.State.PENDING).exists():
            continue
        to_owner = _successor(kpi, membership)
        if to_owner is None:  # the leaver was the last active admin: the deactivation's audit event says so
            requested.append(f"{kpi.key}: nobody to take it (no other active admin); reactivate an admin")
            continue
        reason = f"{membership.user.name} left (deactivated by the identity provider); accept ownership of {kpi.name}."
        OwnershipTransfer.objects.create(
            organization=kpi.organization,
            kpi=kpi,
            from_owner=membership,
            to_owner=to_owner,
            reason=reason,
            requested_by=actor or to_owner.user,
        )
        audit_log(
            org=kpi.organization,
            actor=actor,
            verb="kpi.transfer_requested",
            obj=kpi,
            before={"owner": str(membership)},
            after={"owner": str(to_owner), "reason": reason},
        )
        requested.append(f"{kpi.key} -> {to_owner.user.email}")
    return requested

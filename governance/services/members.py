"""Members' roles, and deactivating a member (refused while they hold a role others rely on)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.models import (
    ApiToken,
    Membership,
    Role,
    User,
)
from governance.selectors import active_admins
from governance.services.audit import audit_log

# Apps above this one register what keeps a member from leaving (KPIs they still own, open tasks...):
# each check returns a sentence naming the blockers, or "" when there are none.
DEACTIVATION_BLOCKERS: list[Callable[[Membership], str]] = []


LAST_ADMIN = "This is the last admin; make someone else admin first."


def admin_remains_without(membership: Membership) -> bool:
    """Whether another active admin remains once this membership stops being one. The admins' rows are locked first
    (in id order, so two callers never deadlock): two admins demoting each other at once would otherwise each see
    the other still in place and leave the organization with none."""
    admins = active_admins(membership.organization_id).select_for_update(of=("self",)).order_by("pk")
    return any(pk != membership.pk for pk in admins.values_list("pk", flat=True))


@transaction.atomic
def membership_change_role(*, membership: Membership, actor: User, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f'"{role}" is not a role.'})
    if membership.role == Role.ADMIN and role != Role.ADMIN and not admin_remains_without(membership):
        raise ValidationError({"role": LAST_ADMIN}, code="last_admin")
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    if before["role"] != role:
        audit_log(
            org=membership.organization,
            actor=actor,
            verb="member.role_changed",
            obj=membership,
            before=before,
            after={"role": role},
        )
    return membership


@transaction.atomic
def membership_set_active(*, membership: Membership, actor: User, active: bool) -> Membership:
    """Deactivation removes access at once and revokes the member's personal API tokens; refused while the member
    holds a role others rely on."""
    if membership.is_active == active:
        return membership
    if not active:
        if membership.role == Role.ADMIN and not admin_remains_without(membership):
            raise ValidationError(LAST_ADMIN, code="last_admin")
        led = list(membership.led_teams.values_list("name", flat=True))
        if led:
            raise ValidationError(f"{membership.user.name} leads {', '.join(led)}; choose another lead first.")
        blockers = [message for check in DEACTIVATION_BLOCKERS if (message := check(membership))]
        if blockers:
            raise ValidationError(" ".join(blockers))
    membership.is_active = active
    membership.save(update_fields=["is_active"])
    after = {"is_active": active}
    if not active:
        # Revoked, not merely refused while inactive: reactivating someone must not revive tokens they may have
        # left behind in scripts; they make new ones.
        revoked = ApiToken.objects.filter(membership=membership, revoked_at=None).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        if revoked:
            after["api_tokens_revoked"] = revoked
    audit_log(
        org=membership.organization,
        actor=actor,
        verb="member.reactivated" if active else "member.deactivated",
        obj=membership,
        before={"is_active": not active},
        after=after,
    )
    return membership

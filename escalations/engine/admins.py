"""An organization whose identity provider deactivated its last active admin has nobody who can administer it
(governance flags it: Organization.admin_missing_since). Every active executive is told at once, and an executive
who joins later when they arrive, with what brings an admin back; once an active admin exists again (reactivated
or promoted through the provider's groups) the flag is cleared. Both are audited.

Flagged organizations are rare, so the sweep reads them one by one; an organization never flagged costs nothing."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone

from escalations.models import Notification
from escalations.notify.fanout import Message, notify
from governance import formats
from governance.models import Membership, Organization, Role
from governance.selectors import active_admins
from governance.services.audit import audit_log

KIND = "admin_missing"


def advance_missing_admins(*, now: datetime | None = None, org_id: int | None = None) -> int:
    """Tells the executives of every flagged organization still without an admin, and clears the flag of those that
    have one again; returns how many executives were told."""
    now = now or timezone.now()
    flagged = Organization.objects.filter(admin_missing_since__isnull=False)
    if org_id:
        flagged = flagged.filter(pk=org_id)
    told = 0
    # The escalation sweep runs this in its last transaction: no savepoint of its own (its constant query budget).
    with transaction.atomic(savepoint=False):
        # Locked (skipping those another sweep holds) so that two sweeps tell and audit once; NO KEY leaves inserts
        # of rows that name the organization free to go on.
        locked = flagged.select_for_update(skip_locked=True, no_key=True)
        for org in locked.annotate(has_admin=Exists(active_admins(OuterRef("pk")))):
            if org.has_admin:
                _clear(org)
            else:
                told += _tell_executives(org, now)
    return told


def _clear(org: Organization) -> None:
    if Organization.objects.filter(pk=org.pk).update(admin_missing_since=None):
        admins = active_admins(org).order_by("user__email").values_list("user__email", flat=True)
        audit_log(
            org=org,
            actor=None,
            verb="organization.admin_restored",
            obj=org,
            before={"admin_missing_since": org.admin_missing_since.isoformat()},
            after={"admins": list(admins)},
        )


def _tell_executives(org: Organization, now: datetime) -> int:
    key = f"{org.pk}:{KIND}:{org.admin_missing_since.isoformat()}"
    already = Notification.objects.filter(organization=org, kind=KIND, dedup_key__startswith=f"{key}:")
    executives = list(
        Membership.objects.filter(organization=org, role=Role.EXECUTIVE, is_active=True, user__is_active=True)
        .exclude(pk__in=already.values("recipient_id"))
        .select_related("user")
        .order_by("created_at", "pk")
    )
    if not executives:
        return 0
    since = formats.when(org.admin_missing_since, org.tzinfo)
    notify(
        recipients=executives,
        message=Message(
            kind=KIND,
            subject=f"Nobody can administer {org.name}",
            body=(
                f"Since {since} {org.name} has no active admin: the identity provider deactivated the last one. "
                "Until an admin is back nobody can change roles, invite people, or manage single sign-on, secrets "
                "and API tokens. Ask your identity provider's administrators to reactivate an admin, or to add "
                "someone to a group that single sign-on maps to the admin role."
            ),
            url=reverse("escalations:governance_health", args=[org.slug]),
        ),
        dedup_key=key,
        now=now,
    )
    audit_log(
        org=org,
        actor=None,
        verb="organization.admin_missing_notified",
        obj=org,
        after={"executives": [m.user.email for m in executives]},
    )
    return len(executives)

"""Creating an organization and changing its settings."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import tenancy
from governance.models import (
    Membership,
    Organization,
    Role,
    User,
)
from governance.services.audit import audit_log, snapshot

ORG_FIELDS = [
    "slug",
    "name",
    "timezone",
    "business_days",
    "business_start",
    "business_end",
    "default_escalation",
    "require_two_factor",
    "raw_measurement_days",
]


@transaction.atomic
def organization_create(*, creator: User, slug: str, name: str, timezone_name: str = "UTC") -> Organization:
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f'The address "{slug}" is taken; choose another.'})
    org = Organization(slug=slug, name=name, timezone=timezone_name)
    org.full_clean()
    org.save()
    with tenancy.scope(organization=org.pk, user=creator.pk):
        Membership.objects.create(organization=org, user=creator, role=Role.ADMIN)
        audit_log(org=org, actor=creator, verb="organization.created", obj=org, after=snapshot(org, ORG_FIELDS))
    return org


@transaction.atomic
def organization_update(*, org: Organization, actor: User, **fields) -> Organization:
    # "before" comes from the stored row: a bound ModelForm has already written its values onto `org`.
    before = snapshot(Organization.objects.select_for_update().get(pk=org.pk), ORG_FIELDS)
    for name, value in fields.items():
        setattr(org, name, value)
    org.full_clean()
    org.save()
    after = snapshot(org, ORG_FIELDS)
    if after != before:
        audit_log(org=org, actor=actor, verb="organization.updated", obj=org, before=before, after=after)
    return org


def organization_flag_missing_admin(*, org: Organization, actor: User | None, leaver: Membership) -> None:
    """The identity provider deactivated the organization's last active admin, which it may (its word is final):
    the organization is flagged for the escalation sweep to tell the executives and for the pages to show, until
    an active admin exists again."""
    # From now, even over an older flag the sweep has not cleared yet: the leaver was an admin, so that gap had ended.
    org.admin_missing_since = timezone.now()
    Organization.objects.filter(pk=org.pk).update(admin_missing_since=org.admin_missing_since)
    audit_log(
        org=org,
        actor=actor,
        verb="organization.admin_missing",
        obj=org,
        after={"last_admin": leaver.user.email, "by": "scim"},
    )

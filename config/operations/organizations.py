"""A customer who leaves: every row of their organization exported, then deleted but for the audit log.

The audit log stays, as the law requires of such records (docs/operations.md, "A customer who leaves"): its rows
point at the organization and at the people who acted (PROTECT), so the organization's row stays as a nameless
tombstone and its people's accounts are anonymized instead of deleted when the audit log names them.
"""

from __future__ import annotations

from django.apps import apps
from django.core import serializers
from django.db import transaction
from django.db.models import Model, ProtectedError, RestrictedError

from escalations.collaboration.models import Attachment
from governance.models import AuditEvent, Membership, Organization, User


def tenant_models() -> list[type[Model]]:
    """Every model whose rows belong to one organization (an `organization` foreign key), the audit log too."""
    return [
        model
        for model in apps.get_models()
        if any(f.name == "organization" and f.related_model is Organization for f in model._meta.concrete_fields)
    ]


def export_organization(org: Organization) -> str:
    """The organization, its people's accounts and every row it owns, as Django's JSON serialization."""
    users = User.objects.filter(memberships__organization=org).distinct()
    querysets = [Organization.objects.filter(pk=org.pk), users]
    querysets += [model._default_manager.filter(organization=org).order_by("pk") for model in tenant_models()]
    return serializers.serialize("json", [row for queryset in querysets for row in queryset], indent=1)


@transaction.atomic
def delete_organization(org: Organization) -> dict[str, int]:
    """Deletes every row the organization owns except its audit log; returns the counts by model."""
    people = set(Membership.objects.filter(organization=org).values_list("user_id", flat=True))
    # Stored files go with their rows (a queryset's delete leaves them in the storage); after the commit, so that a
    # failed deletion keeps them.
    files = [a.file for a in Attachment.objects.filter(organization=org)]
    transaction.on_commit(lambda: [f.delete(save=False) for f in files])
    remaining = [model for model in tenant_models() if model is not AuditEvent]
    deleted: dict[str, int] = {}
    while remaining:
        blocked = []
        for model in remaining:
            try:
                with transaction.atomic():
                    _, counts = model._default_manager.filter(organization=org).delete()
            except (ProtectedError, RestrictedError):
                blocked.append(model)  # another tenant model still points at these rows: after it
                continue
            for label, n in counts.items():
                deleted[label] = deleted.get(label, 0) + n
        if len(blocked) == len(remaining):
            raise RuntimeError(f"Rows of {', '.join(m.__name__ for m in blocked)} protect each other.")
        remaining = blocked
    _forget_people(people)
    org.slug, org.name = f"deleted-{org.pk}", f"Deleted organization {org.pk}"
    org.save(update_fields=["slug", "name"])
    return deleted


def _forget_people(user_ids: set[int]) -> None:
    """Accounts that belonged to no other organization: deleted, or anonymized where the audit log names them."""
    leaving = User.objects.filter(pk__in=user_ids).exclude(memberships__isnull=False)
    named = set(AuditEvent.objects.filter(actor__in=leaving).values_list("actor_id", flat=True))
    for user in leaving.filter(pk__in=named):
        user.email, user.name, user.is_active = f"deleted-{user.pk}@invalid", "", False
        user.set_unusable_password()
        user.save()
    leaving.exclude(pk__in=named).delete()

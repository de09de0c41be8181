"""Organization secrets: setting, deleting (refused while something names one) and re-encrypting under a new key."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.models import (
    Organization,
    Secret,
    User,
    secret_name_validator,
)
from governance.secrets import MAX_VALUE_LENGTH, encrypt, fingerprint, references, rotate
from governance.services.audit import audit_log


@transaction.atomic
def secret_set(*, org: Organization, actor: User | None, name: str, value: str) -> Secret:
    """Creates or replaces the secret `name`; the audit event keeps its name and fingerprints, never the value."""
    name = name.strip()
    try:
        secret_name_validator(name)
    except ValidationError as e:
        raise ValidationError({"name": e.messages}) from None
    if not value:
        raise ValidationError({"value": "Paste the secret's value; an empty one would only make pulls fail."})
    if len(value) > MAX_VALUE_LENGTH or "\x00" in value:
        raise ValidationError({"value": f"A secret is text of at most {MAX_VALUE_LENGTH:,} characters."})
    existing = Secret.objects.for_org(org).select_for_update().filter(name=name).first()
    before = {"fingerprint": existing.fingerprint} if existing else None
    secret = existing or Secret(organization=org, name=name)
    secret.ciphertext, secret.fingerprint = encrypt(value), fingerprint(value)
    secret.set_by, secret.set_at = actor, timezone.now()
    secret.save()
    after = {"name": name, "fingerprint": secret.fingerprint}
    audit_log(
        org=org,
        actor=actor,
        verb="secret.replaced" if existing else "secret.set",
        obj=secret,
        before=before,
        after=after,
    )
    return secret


@transaction.atomic
def secret_delete(*, secret: Secret, actor: User | None) -> None:
    """Deletes a secret nothing names any more; while a source or a webhook names it, it is refused."""
    users = references(secret.organization).get(secret.name)
    if users:
        raise ValidationError(
            f"`{secret.name}` is still used by {', '.join(users)}: point them at another secret first."
        )
    audit_log(
        org=secret.organization,
        actor=actor,
        verb="secret.deleted",
        obj=secret,
        before={"name": secret.name, "fingerprint": secret.fingerprint},
    )
    secret.delete()


@transaction.atomic
def secrets_rotate(*, org: Organization) -> int:
    """Re-encrypts the organization's secrets under the first of SECRETS_KEYS (values and fingerprints unchanged),
    so that the older keys can be dropped; returns how many. Runs in the organization's scope, the only one that
    sees its secrets."""
    secrets = list(Secret.objects.for_org(org).select_for_update())
    for secret in secrets:
        secret.ciphertext = rotate(secret.ciphertext)
    Secret.objects.bulk_update(secrets, ["ciphertext"])
    if secrets:
        audit_log(org=org, actor=None, verb="secret.rotated", after={"secrets": [s.name for s in secrets]})
    return len(secrets)

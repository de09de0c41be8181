"""API tokens: creating, revoking, and authenticating a bearer string (its use audited at most once a minute)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from governance import tenancy
from governance.models import (
    ApiToken,
    Membership,
    Organization,
    Scope,
    User,
    single_line_validator,
)
from governance.services.audit import audit_log

API_TOKEN_PREFIX = "stc_"
LAST_USE_PRECISION = timedelta(minutes=1)  # one write per token per minute, not one per request


def api_token_digest(token: str) -> str:
    return hmac.new(settings.API_TOKEN_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    org: Organization,
    actor: User | None,
    name: str,
    membership: Membership | None = None,
    scopes: Iterable[str] | None = None,
) -> tuple[ApiToken, str]:
    """An organization token (no membership) or a member's personal one; the token is returned once, never stored.

    An organization token carries `scopes` (default: measurements:write only); a personal token acts as its member,
    with the member's permissions, and takes no scopes.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the token a name that says where it is used."})
    try:
        single_line_validator(name)
    except ValidationError as error:
        raise ValidationError({"name": error.messages}) from error
    if membership is not None and (membership.organization_id != org.pk or not membership.is_active):
        raise ValidationError({"membership": "Personal tokens belong to an active member of this organization."})
    if membership is not None:
        if scopes:
            raise ValidationError({"scopes": "A personal token acts as its member: it takes no scopes."})
        scopes = []
    else:
        scopes = set([Scope.MEASUREMENTS_WRITE] if scopes is None else scopes)
        unknown = sorted(scopes - set(Scope.values))
        if unknown:
            raise ValidationError(
                {"scopes": f"Unknown scope {', '.join(unknown)}; choose from {', '.join(Scope.values)}."}
            )
        if not scopes:
            raise ValidationError({"scopes": "An organization token needs at least one scope."})
        scopes = [scope for scope in Scope.values if scope in scopes]
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    api_token = ApiToken.objects.create(
        organization=org,
        membership=membership,
        name=name[:100],
        prefix=token[:12],
        digest=api_token_digest(token),
        created_by=actor,
        scopes=scopes,
    )
    after = {
        "name": api_token.name,
        "prefix": api_token.prefix,
        "member": str(membership) if membership else None,
        "scopes": scopes,
    }
    audit_log(org=org, actor=actor, verb="api_token.created", obj=api_token, after=after)
    return api_token, token


@transaction.atomic
def api_token_revoke(*, api_token: ApiToken, actor: User) -> ApiToken:
    if api_token.revoked_at is not None:
        raise ValidationError("This token is already revoked.")
    api_token.revoked_at, api_token.revoked_by = timezone.now(), actor
    api_token.save(update_fields=["revoked_at", "revoked_by"])
    audit_log(org=api_token.organization, actor=actor, verb="api_token.revoked", obj=api_token)
    return api_token


def api_token_authenticate(token: str, *, ip: str | None = None, path: str = "") -> ApiToken | None:
    """The live token behind a bearer string (a personal one only while its member is active); records its use.

    Use is audited as security.api_token_used on the token's first use and then at most once per
    API_TOKEN_AUDIT_EVERY (the guarded update lets one request of many concurrent ones write it), so a loader
    calling every few seconds leaves one row an hour, not thousands. A revoked token or a deactivated member's is
    refused and audited as security.api_token_refused on the same terms: someone still holds it. A string that
    matches no token belongs to no organization and is not audited (the API answers 401 and logs nothing per try).
    A token that matches puts the request in its organization's tenant scope (governance.tenancy).
    """
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    digest = api_token_digest(token)
    with tenancy.scope(token=digest):  # the one token whose digest is presented, nothing else
        org_id = ApiToken.objects.filter(digest=digest).values_list("organization_id", flat=True).first()
    if org_id is None:
        return None
    tenancy.switch(organization=org_id)
    api_token = ApiToken.objects.select_related("organization", "membership__user").get(digest=digest)
    now = timezone.now()
    refused = api_token.revoked_at is not None or (
        api_token.membership is not None and not api_token.membership.is_active
    )
    _audit_api_token_use(api_token, now=now, refused=refused, ip=ip, path=path)
    if refused:
        return None
    if api_token.last_used_at is None or api_token.last_used_at < now - LAST_USE_PRECISION:
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        api_token.last_used_at = now
    return api_token


def _audit_api_token_use(api_token: ApiToken, *, now, refused: bool, ip: str | None, path: str) -> None:
    since = now - settings.API_TOKEN_AUDIT_EVERY
    if api_token.use_audited_at is not None and api_token.use_audited_at >= since:
        return  # audited within the period: no query at all on the common path
    stale = Q(use_audited_at=None) | Q(use_audited_at__lt=since)
    with transaction.atomic():
        if not ApiToken.objects.filter(stale, pk=api_token.pk).update(use_audited_at=now):
            return  # a concurrent request has just written it
        membership = api_token.membership
        audit_log(
            org=api_token.organization,
            actor=membership.user if membership else None,
            verb="security.api_token_refused" if refused else "security.api_token_used",
            obj=api_token,
            after={
                "prefix": api_token.prefix,
                "ip": ip,
                "path": path,
                **({"reason": "revoked" if api_token.revoked_at else "member deactivated"} if refused else {}),
            },
        )
    api_token.use_audited_at = now

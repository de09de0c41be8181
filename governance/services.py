"""Writes of the governance app. Each one records its own audit event, so no caller can forget it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Model, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_guid import get_guid
from guardian.shortcuts import assign_perm, remove_perm

from governance import tenancy
from governance.durations import format_duration
from governance.models import (
    ApiToken,
    AuditEvent,
    Heartbeat,
    Invitation,
    Membership,
    Organization,
    Role,
    Scope,
    Secret,
    SecurityEventRepeat,
    Team,
    User,
    secret_name_validator,
    single_line,
    single_line_validator,
)
from governance.secrets import MAX_VALUE_LENGTH, encrypt, fingerprint, references, rotate


def audit_log(
    *,
    org: Organization,
    actor: User | None,
    verb: str,
    obj: Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    return _record(
        AuditEvent(
            organization=org,
            actor=actor,
            verb=verb,
            object_type=obj._meta.label_lower if obj is not None else "",
            object_id=str(obj.pk) if obj is not None else "",
            object_repr=str(obj)[:200] if obj is not None else "",
            before=before,
            after=after,
            request_id=get_guid() or "",
        )
    )


def audit_security_event(*, verb: str, user: User | None, actor: User | None = None, after: dict) -> None:
    """A login event, filed under every organization the user belongs to, so each one's admins see what concerns
    their people; an event about no known user (a mistyped or guessed email) belongs to no organization."""
    # No request scope covers a login: the user's memberships are read as theirs, each event written as its
    # organization's; one that belongs to no organization needs no scope (governance.rls.UNOWNED).
    with tenancy.scope(user=user.pk if user else None):
        org_ids = list(Membership.objects.filter(user=user).values_list("organization_id", flat=True)) if user else []
    guid = get_guid() or ""
    for org_id in org_ids or [None]:
        with tenancy.scope(organization=org_id):
            _record(
                AuditEvent(
                    organization_id=org_id,
                    actor=actor,
                    verb=verb,
                    object_type=user._meta.label_lower if user else "",
                    object_id=str(user.pk) if user else "",
                    object_repr=str(user)[:200] if user else "",
                    after=after,
                    request_id=guid,
                )
            )


def security_event_key(event: AuditEvent, minute: datetime) -> str:
    """Which security events count as one: same organization, actor (or, for nobody signed in, address), verb and
    object, within one minute."""
    who = f"user:{event.actor_id}" if event.actor_id else f"ip:{(event.after or {}).get('ip') or ''}"
    obj = f"{event.object_type}:{event.object_id}"
    return f"{event.organization_id or '-'}|{who}|{event.verb}|{obj}|{minute:%Y-%m-%dT%H:%M}"[:255]


def _record(event: AuditEvent) -> AuditEvent:
    """Writes the event; a security event that repeats one of the same minute is counted on that one's row
    (SecurityEventRepeat) instead, so that no one can flood the log by repeating a refused request."""
    if not event.verb.startswith("security."):
        event.save()
        return event
    now = timezone.now()
    key = security_event_key(event, now.replace(second=0, microsecond=0))
    repeats = SecurityEventRepeat.objects.filter(key=key)
    if repeats.update(count=F("count") + 1, last_at=now):
        return repeats.select_related("event").get().event
    try:
        with transaction.atomic():
            event.save()
            SecurityEventRepeat.objects.create(organization_id=event.organization_id, key=key, event=event, last_at=now)
    except IntegrityError:  # a concurrent request wrote the minute's first event; this one counts on it
        repeats.update(count=F("count") + 1, last_at=now)
        return repeats.select_related("event").get().event
    return event


def snapshot(obj: Model, fields: Iterable[str]) -> dict:
    """The audit view of an object: plain JSON values, foreign keys as their string form."""
    values = {}
    for name in fields:
        value = getattr(obj, name)
        if isinstance(value, Model):
            value = str(value)
        elif isinstance(value, timedelta):
            value = format_duration(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        values[name] = value
    return values


# --- organizations ------------------------------------------------------------------------------

ORG_FIELDS = [
    "slug",
    "name",
    "timezone",
    "business_days",
    "business_start",
    "business_end",
    "default_escalation",
    "require_two_factor",
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


# --- teams --------------------------------------------------------------------------------------

TEAM_FIELDS = ["key", "name", "parent", "lead", "escalation"]


def _check_team(team: Team) -> None:
    if team.parent_id and team.parent.organization_id != team.organization_id:
        raise ValidationError({"parent": "Pick a team of this organization."})
    if team.lead_id and (team.lead.organization_id != team.organization_id or not team.lead.is_active):
        raise ValidationError({"lead": "The lead must be an active member of this organization."})
    if team.pk and team.parent_id and team.pk in [team.parent_id, *(t.pk for t in team.parent.ancestors())]:
        raise ValidationError({"parent": f'"{team.parent}" sits inside "{team}"; a team cannot nest in itself.'})
    team.full_clean()


def _sync_lead_permission(team: Team, old_lead: Membership | None) -> None:
    # The lead manages the team (members, name); the right moves with the role.
    if old_lead and old_lead != team.lead:
        remove_perm("governance.manage_team", old_lead.user, team)
    if team.lead:
        assign_perm("governance.manage_team", team.lead.user, team)


@transaction.atomic
def team_create(
    *,
    org: Organization,
    actor: User,
    key: str,
    name: str,
    parent: Team | None = None,
    lead: Membership | None = None,
    escalation: str = "",
) -> Team:
    team = Team(organization=org, key=key, name=name, parent=parent, lead=lead, escalation=escalation)
    _check_team(team)
    team.save()
    _sync_lead_permission(team, None)
    if lead:
        lead.teams.add(team)
    audit_log(org=org, actor=actor, verb="team.created", obj=team, after=snapshot(team, TEAM_FIELDS))
    return team


@transaction.atomic
def team_update(*, team: Team, actor: User, **fields) -> Team:
    stored = Team.objects.select_for_update(of=("self",)).select_related("parent", "lead__user").get(pk=team.pk)
    before = snapshot(stored, TEAM_FIELDS)  # from the database, as in organization_update
    old_lead = stored.lead
    for name, value in fields.items():
        setattr(team, name, value)
    _check_team(team)
    team.save()
    _sync_lead_permission(team, old_lead)
    if team.lead:
        team.lead.teams.add(team)
    after = snapshot(team, TEAM_FIELDS)
    if after != before:
        audit_log(org=team.organization, actor=actor, verb="team.updated", obj=team, before=before, after=after)
    return team


@transaction.atomic
def team_set_members(*, team: Team, actor: User, members: Iterable[Membership]) -> Team:
    members = list(members)
    if any(m.organization_id != team.organization_id for m in members):
        raise ValidationError({"members": "Pick members of this organization."})
    before = sorted(m.user.email for m in team.memberships.select_related("user"))
    team.memberships.set(members)
    if team.lead and team.lead not in members:
        team.memberships.add(team.lead)  # the lead always belongs to the team they lead
    after = sorted(m.user.email for m in team.memberships.select_related("user"))
    if after != before:
        audit_log(
            org=team.organization,
            actor=actor,
            verb="team.members_changed",
            obj=team,
            before={"members": before},
            after={"members": after},
        )
    return team


# --- members ------------------------------------------------------------------------------------

# Apps above this one register what keeps a member from leaving (KPIs they still own, open tasks...):
# each check returns a sentence naming the blockers, or "" when there are none.
DEACTIVATION_BLOCKERS: list[Callable[[Membership], str]] = []


def _other_active_admins(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.ADMIN, is_active=True)
        .exclude(pk=membership.pk)
        .exists()
    )


@transaction.atomic
def membership_change_role(*, membership: Membership, actor: User, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f'"{role}" is not a role.'})
    if membership.role == Role.ADMIN and role != Role.ADMIN and not _other_active_admins(membership):
        raise ValidationError({"role": "This is the last admin; make someone else admin first."})
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
        if membership.role == Role.ADMIN and not _other_active_admins(membership):
            raise ValidationError("This is the last admin; make someone else admin first.")
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


# --- API tokens ---------------------------------------------------------------------------------

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


# --- organization secrets -------------------------------------------------------------------------


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


# --- invitations --------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def invitation_create(
    *,
    org: Organization,
    actor: User,
    email: str,
    role: str,
    teams: Iterable[Team] = (),
    base_url: str | None = None,
) -> tuple[Invitation, str]:
    """Returns the invitation and its token; the token is never stored and cannot be shown again."""
    email = User.objects.normalize_email(email).lower()
    if Membership.objects.filter(organization=org, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {org}."})
    if Invitation.objects.filter(
        organization=org,
        email__iexact=email,
        accepted_at=None,
        revoked_at=None,
        expires_at__gt=timezone.now(),
    ).exists():
        raise ValidationError({"email": f"{email} already has a pending invitation; revoke it to send a new one."})
    # An expired open invitation would block the partial unique index; it is superseded, visibly.
    Invitation.objects.filter(organization=org, email__iexact=email, accepted_at=None, revoked_at=None).update(
        revoked_at=timezone.now()
    )
    teams = list(teams)
    if any(t.organization_id != org.pk for t in teams):
        raise ValidationError({"teams": "Pick teams of this organization."})
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization=org,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by=actor,
        expires_at=timezone.now() + settings.INVITATION_TTL,
    )
    invitation.teams.set(teams)
    audit_log(org=org, actor=actor, verb="member.invited", obj=invitation, after={"email": email, "role": role})
    url = (base_url or settings.SITE_URL) + reverse("invitation_accept", args=[token])
    context = {"invitation": invitation, "url": url}
    transaction.on_commit(
        lambda: send_mail(
            subject=single_line(f"You are invited to {org} on Steerco"),
            message=render_to_string("governance/email/invitation.txt", context),
            html_message=render_to_string("governance/email/invitation.html", context),
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation, token


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    if invitation.state != "pending":
        raise ValidationError(f"This invitation is {invitation.state}; only pending invitations can be revoked.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_log(org=invitation.organization, actor=actor, verb="invitation.revoked", obj=invitation)
    return invitation


@transaction.atomic
def invitation_resend(*, invitation: Invitation, actor: User, base_url: str | None = None) -> tuple[Invitation, str]:
    """A new invitation (new token, new expiry) for an expired one's email, role and teams; it supersedes the
    expired one (see invitation_create)."""
    if invitation.state != "expired":
        raise ValidationError(f"This invitation is {invitation.state}; only expired invitations are sent again.")
    return invitation_create(
        org=invitation.organization,
        actor=actor,
        email=invitation.email,
        role=invitation.role,
        teams=invitation.teams.all(),
        base_url=base_url,
    )


def invitation_for_token(token: str) -> Invitation:
    """The usable invitation behind a token, or a ValidationError that says plainly why not; puts the request in
    the invitation's organization's tenant scope (governance.tenancy)."""
    digest = hash_token(token)
    with tenancy.scope(token=digest):  # the one invitation whose digest is presented, nothing else
        org_id = Invitation.objects.filter(token_hash=digest).values_list("organization_id", flat=True).first()
    if org_id is None:
        raise ValidationError("This invitation link is not valid. Ask an admin of the organization for a new one.")
    tenancy.switch(organization=org_id)
    invitation = Invitation.objects.select_related("organization").get(token_hash=digest)
    if invitation.state != "pending":
        message = {
            "accepted": "This invitation has already been used. Log in instead.",
            "revoked": "This invitation was withdrawn. Ask an admin of the organization for a new one.",
            "expired": "This invitation has expired. Ask an admin of the organization for a new one.",
        }[invitation.state]
        audit_log(
            org=invitation.organization,
            actor=None,
            verb="security.invitation_refused",
            obj=invitation,
            after={"state": invitation.state},
        )
        raise ValidationError(message)
    return invitation


def invitation_accept(*, token: str, user: User | None = None, name: str = "", password: str = "") -> Membership:
    """Accept as the logged-in `user` (whose email must match), or create the account from name + password."""
    invitation = invitation_for_token(token)  # outside the transaction: a refusal stays audited
    with transaction.atomic():
        # Lock the row so that two clicks on the same link cannot create two memberships.
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at:
            raise ValidationError("This invitation has already been used. Log in instead.")
        if user is None:
            if User.objects.filter(email__iexact=invitation.email).exists():
                raise ValidationError(f"An account for {invitation.email} exists; log in to accept the invitation.")
            user = User.objects.create_user(invitation.email, password, name=name)
        elif user.email.lower() != invitation.email.lower():
            raise ValidationError(f"This invitation is for {invitation.email}, but you are logged in as {user.email}.")
        membership, created = Membership.objects.get_or_create(
            organization=invitation.organization, user=user, defaults={"role": invitation.role}
        )
        if not created and not membership.is_active:
            raise ValidationError("Your membership of this organization was deactivated; ask an admin.")
        membership.teams.add(*invitation.teams.all())
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_log(
            org=invitation.organization,
            actor=user,
            verb="invitation.accepted",
            obj=membership,
            after={"email": user.email, "role": membership.role},
        )
    return membership


# --- operations ---------------------------------------------------------------------------------


def heartbeat_record(*, name: str = "worker") -> Heartbeat:
    beat, _ = Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})
    return beat

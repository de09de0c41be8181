"""Writes of enterprise identity: configuring an organization's single sign-on, signing people in through it
(just-in-time membership, roles and teams re-synced from the provider's groups), and the refusals of password
logins and resets that single sign-on requires. Each write records its audit event."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core import signing
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from governance import tenancy
from governance.identity.models import ScimGroup, SingleSignOn, SsoDomain
from governance.models import Membership, Organization, Role, Team, User, single_line
from governance.services.audit import audit_log, audit_security_event, snapshot
from governance.services.members import admin_remains_without
from governance.services.organizations import organization_flag_missing_admin

SSO_FIELDS = ["issuer", "client_id", "client_secret_name", "groups_claim", "group_mapping", "enabled", "require_sso"]
ROLE_RANK = {Role.MEMBER: 0, Role.EXECUTIVE: 1, Role.ADMIN: 2}
TEAM_PREFIX = "team:"


class SignInRefused(SuspiciousOperation):
    """A verified ID token that still may not sign anyone in here (its domain, a deactivated membership)."""


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower()


def sso_for_email(email: str) -> SingleSignOn | None:
    """The enabled single sign-on covering the email's domain. The domain is presented like a token (governance.rls):
    nothing of the organization is readable until it is known."""
    domain = email_domain(email)
    if not domain:
        return None
    with tenancy.scope(token=domain):
        org_id = SsoDomain.objects.filter(domain=domain).values_list("organization_id", flat=True).first()
    if org_id is None:
        return None
    with tenancy.scope(organization=org_id):
        return SingleSignOn.objects.select_related("organization").filter(organization_id=org_id, enabled=True).first()


def sso_for_org(org_id: int) -> SingleSignOn | None:
    with tenancy.scope(organization=org_id):
        return SingleSignOn.objects.select_related("organization").filter(organization_id=org_id, enabled=True).first()


def validate_group_mapping(org: Organization, mapping: list[list[str]]) -> None:
    team_keys = set(Team.objects.for_org(org).values_list("key", flat=True))
    for group, target in mapping:
        if target.startswith(TEAM_PREFIX):
            if target[len(TEAM_PREFIX) :] not in team_keys:
                raise ValidationError({"group_mapping": f'Group "{group}": there is no team "{target[5:]}".'})
        elif target not in ROLE_RANK:
            raise ValidationError(
                {
                    "group_mapping": f'Group "{group}": "{target}" is neither a role (admin, executive, member) '
                    'nor "team:<key>".'
                }
            )


@transaction.atomic
def sso_configure(
    *,
    org: Organization,
    actor: User,
    issuer: str,
    client_id: str,
    client_secret_name: str,
    domains: list[str],
    group_mapping: list[list[str]],
    groups_claim: str = "groups",
    enabled: bool = True,
    require_sso: bool = False,
) -> SingleSignOn:
    validate_group_mapping(org, group_mapping)
    existing = SingleSignOn.objects.for_org(org).select_for_update().first()
    before = snapshot(existing, SSO_FIELDS) if existing else None
    old_domains = sorted(SsoDomain.objects.for_org(org).values_list("domain", flat=True))
    sso = existing or SingleSignOn(organization=org)
    for name, value in {
        "issuer": issuer.strip(),  # as the provider writes it: the ID token's `iss` must match it exactly
        "client_id": client_id,
        "client_secret_name": client_secret_name,
        "groups_claim": groups_claim,
        "group_mapping": group_mapping,
        "enabled": enabled,
        "require_sso": require_sso,
    }.items():
        setattr(sso, name, value)
    sso.updated_by, sso.updated_at = actor, timezone.now()
    sso.full_clean(exclude=["organization"])
    sso.save()
    SsoDomain.objects.for_org(org).exclude(domain__in=domains).delete()
    for domain in sorted(set(domains) - set(old_domains)):
        try:
            with transaction.atomic():
                SsoDomain.objects.create(organization=org, domain=domain)
        except IntegrityError:
            raise ValidationError(
                {"domains": f"{domain} is already covered by another organization's single sign-on."}
            ) from None
    audit_log(
        org=org,
        actor=actor,
        verb="identity.sso_configured" if existing is None else "identity.sso_updated",
        obj=sso,
        before=before and {**before, "domains": old_domains},
        after={**snapshot(sso, SSO_FIELDS), "domains": sorted(domains)},
    )
    return sso


def _mapped(sso: SingleSignOn, groups: list[str]) -> tuple[str, set[str]]:
    """The role and the team keys the groups grant: the highest mapped role, else member."""
    role, teams = Role.MEMBER, set()
    for group, target in sso.group_mapping:
        if group not in groups:
            continue
        if target.startswith(TEAM_PREFIX):
            teams.add(target[len(TEAM_PREFIX) :])
        elif ROLE_RANK[target] > ROLE_RANK[role]:
            role = target
    return role, teams


def _claimed_groups(sso: SingleSignOn, claims: dict) -> list[str]:
    groups = claims.get(sso.groups_claim) or []
    return [str(g) for g in groups] if isinstance(groups, list) else [str(groups)]


def _keeps_an_admin(membership: Membership, role: str) -> bool:
    return membership.role != Role.ADMIN or role == Role.ADMIN or admin_remains_without(membership)


@transaction.atomic
def sso_sign_in(*, sso: SingleSignOn, claims: dict) -> User:
    """The person the verified claims name, as an active member of the organization: created on their first
    sign-in (role from the groups, else member), role and mapped teams re-synced at every sign-in. Runs in the
    organization's scope."""
    org = sso.organization
    email = str(claims.get("email") or "").strip().lower()
    if not email or claims.get("email_verified") is False:
        raise SignInRefused("The identity provider sent no verified email address.")
    if not SsoDomain.objects.for_org(org).filter(domain=email_domain(email)).exists():
        raise SignInRefused(f"{email_domain(email)} is not a domain {org.name}'s single sign-on covers.")
    groups = _claimed_groups(sso, claims)
    role, _ = _mapped(sso, groups)
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        name = str(claims.get("name") or "").strip() or email.split("@")[0]
        user = User.objects.create_user(email, None, name=" ".join(name.split())[:150])
    membership = Membership.objects.for_org(org).filter(user=user).first()
    if membership is not None and not membership.is_active:
        raise SignInRefused(f"{email} is deactivated in {org.name}; an admin may reactivate them.")
    if membership is None:
        membership = Membership.objects.create(organization=org, user=user, role=role)
        audit_log(
            org=org,
            actor=user,
            verb="identity.sso_member_joined",
            obj=membership,
            after={"role": role, "groups": groups},
        )
    sync_from_groups(sso=sso, membership=membership, groups=groups, actor=user)
    return user


@transaction.atomic
def sync_from_groups(*, sso: SingleSignOn, membership: Membership, groups: list[str], actor: User | None) -> None:
    """The member's role and mapped teams as the provider's groups grant them (sign-in and SCIM groups)."""
    org = sso.organization
    role, team_keys = _mapped(sso, groups)
    if membership.role != role:
        if _keeps_an_admin(membership, role):
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            audit_log(
                org=org,
                actor=actor,
                verb="identity.sso_role_synced",
                obj=membership,
                before={"role": before},
                after={"role": role, "groups": groups},
            )
        else:
            audit_log(
                org=org,
                actor=actor,
                verb="identity.sso_role_kept",
                obj=membership,
                after={"role": membership.role, "groups_grant": role, "reason": "the organization's last admin"},
            )
    _sync_teams(sso, membership, team_keys, groups, actor=actor)


def _sync_teams(
    sso: SingleSignOn, membership: Membership, team_keys: set[str], groups: list[str], *, actor: User | None
) -> None:
    """Adds the member to the teams their groups map to and takes them off mapped teams their groups no longer
    grant; teams no group maps are the admins' to manage and stay as they are."""
    mapped_keys = {t[len(TEAM_PREFIX) :] for _, t in sso.group_mapping if t.startswith(TEAM_PREFIX)}
    teams = {t.key: t for t in Team.objects.for_org(sso.organization).filter(key__in=mapped_keys)}
    current = {t.key for t in membership.teams.filter(key__in=mapped_keys)}
    added, removed = sorted(team_keys - current), sorted((current - team_keys) & set(teams))
    if not added and not removed:
        return
    membership.teams.add(*[teams[k] for k in added if k in teams])
    membership.teams.remove(*[teams[k] for k in removed])
    audit_log(
        org=sso.organization,
        actor=actor,
        verb="identity.sso_teams_synced",
        obj=membership,
        before={"teams": sorted(current)},
        after={"teams": sorted((current | set(added)) - set(removed)), "groups": groups},
    )


def is_break_glass(user: User) -> bool:
    return user.email.lower() in settings.SSO_BREAK_GLASS_EMAILS


def organizations_requiring_sso(user: User) -> list[Organization]:
    """The organizations where the user is an active member and single sign-on is required."""
    with tenancy.scope(user=user.pk):
        org_ids = list(Membership.objects.filter(user=user, is_active=True).values_list("organization_id", flat=True))
    required = []
    for org_id in org_ids:
        sso = sso_for_org(org_id)
        if sso is not None and sso.require_sso:
            required.append(sso.organization)
    return required


def password_refusal(*, user: User | None, verb: str, facts: dict) -> str:
    """Why the user may not log in or reset with a password (audited as `verb`), or "" when they may."""
    if user is None or is_break_glass(user):
        return ""
    required = organizations_requiring_sso(user)
    if not required:
        return ""
    audit_security_event(verb=verb, user=user, after={**facts, "requires_sso": [org.slug for org in required]})
    names = ", ".join(org.name for org in required)
    return f"{names} requires single sign-on: continue with your identity provider instead of a password."


# --- starting from zero: self-signup with email verification -------------------------------------

SIGNUP_SALT = "steerco.identity.signup"


def _send(*, to: str, subject: str, template: str, context: dict) -> None:
    transaction.on_commit(
        lambda: send_mail(
            subject=single_line(subject),
            message=render_to_string(template, context),
            from_email=None,
            recipient_list=[to],
        )
    )


@transaction.atomic
def signup_request(*, email: str, name: str, password: str, base_url: str | None = None) -> None:
    """Creates an account that stays inactive until its address is verified, and emails the link. An address that
    already has a working account gets an email saying so instead: the page answers the same either way, so it
    tells nobody which addresses have accounts. An unverified account's name and password are replaced, so that
    nobody can hold someone else's address by signing up with it first."""
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    base = base_url or settings.SITE_URL
    if user is not None and (user.is_active or user.last_login is not None):
        _send(
            to=user.email,
            subject="You already have a Steerco account",
            template="identity/email/account_exists.txt",
            context={"user": user, "login_url": base + reverse("login"), "reset_url": base + reverse("password_reset")},
        )
        audit_security_event(verb="security.signup_existing_account", user=user, after={"email": email})
        return
    if user is None:
        user = User.objects.create_user(email, password, name=name, is_active=False)
    else:
        user.name = name
        user.set_password(password)
        user.save(update_fields=["name", "password"])
    token = signing.dumps({"user": user.pk, "email": user.email}, salt=SIGNUP_SALT)
    _send(
        to=user.email,
        subject="Confirm your email address for Steerco",
        template="identity/email/verify.txt",
        context={
            "user": user,
            "url": base + reverse("identity:signup_verify", args=[token]),
            "hours": int(settings.SIGNUP_VERIFICATION_TTL.total_seconds() // 3600),
        },
    )
    audit_security_event(verb="security.signup_requested", user=user, after={"email": email})


@transaction.atomic
def signup_verify(*, token: str) -> User:
    """Activates the account the emailed link names; the link expires after SIGNUP_VERIFICATION_TTL."""
    try:
        data = signing.loads(token, salt=SIGNUP_SALT, max_age=settings.SIGNUP_VERIFICATION_TTL)
    except signing.SignatureExpired:
        raise ValidationError("This confirmation link has expired: sign up again to get a new one.") from None
    except signing.BadSignature:
        raise ValidationError("This confirmation link is not valid: copy the whole link from the email.") from None
    user = User.objects.select_for_update().filter(pk=data.get("user"), email=data.get("email")).first()
    if user is None:
        raise ValidationError("This confirmation link is not valid: copy the whole link from the email.")
    if not user.is_active:
        if user.last_login is not None:  # deactivated by an operator, not waiting for verification
            raise ValidationError("This account is deactivated; contact your administrator.")
        user.is_active = True
        user.save(update_fields=["is_active"])
        audit_security_event(verb="security.signup_verified", user=user, actor=user, after={"email": user.email})
    return user


# --- SCIM 2.0 provisioning ------------------------------------------------------------------------

# What the layers above do when the identity provider reports a leaver (scorecards: a transfer request for each
# KPI they own). Registered from their AppConfig.ready, since governance cannot import them.
LeaverHandler = Callable[..., list[str]]
LEAVER_HANDLERS: list[LeaverHandler] = []


@transaction.atomic
def scim_user_create(*, org: Organization, actor: User | None, email: str, name: str, active: bool) -> Membership:
    """A member provisioned by the identity provider: the person (no password: they sign in through the provider)
    and their membership, role member until their groups say otherwise."""
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email, None, name=" ".join(name.split())[:150] or email.split("@")[0])
    if Membership.objects.for_org(org).filter(user=user).exists():
        raise ValidationError(f"{email} is already a member of {org.name}.", code="uniqueness")
    membership = Membership.objects.create(organization=org, user=user, role=Role.MEMBER, is_active=True)
    audit_log(org=org, actor=actor, verb="identity.scim_provisioned", obj=membership, after={"email": email})
    if not active:
        scim_user_deactivate(membership=membership, actor=actor)
    return membership


@transaction.atomic
def scim_user_update(
    *, membership: Membership, actor: User | None, name: str | None, active: bool | None
) -> Membership:
    user = membership.user
    name = " ".join((name or "").split())[:150]
    if name and name != user.name:
        before = user.name
        user.name = name
        user.full_clean(validate_unique=False)
        user.save(update_fields=["name"])
        audit_log(
            org=membership.organization,
            actor=actor,
            verb="identity.scim_renamed",
            obj=membership,
            before={"name": before},
            after={"name": user.name},
        )
    if active is False and membership.is_active:
        scim_user_deactivate(membership=membership, actor=actor)
    elif active is True and not membership.is_active:
        membership.is_active = True
        membership.save(update_fields=["is_active"])
        audit_log(
            org=membership.organization,
            actor=actor,
            verb="member.reactivated",
            obj=membership,
            before={"is_active": False},
            after={"is_active": True, "by": "scim"},
        )
    return membership


@transaction.atomic
def scim_user_deactivate(*, membership: Membership, actor: User | None) -> Membership:
    """A leaver: refused at once (the membership is inactive, their personal tokens revoked), even while they own
    KPIs or lead teams; what they hold is handed on by request (LEAVER_HANDLERS), never silently reassigned. The last
    active admin leaves too, and their organization is flagged as having none."""
    last_admin = membership.role == Role.ADMIN and not admin_remains_without(membership)
    membership.is_active = False
    membership.save(update_fields=["is_active"])
    revoked = membership.api_tokens.filter(revoked_at=None).update(revoked_at=timezone.now(), revoked_by=actor)
    handed_on = [entry for handler in LEAVER_HANDLERS for entry in handler(membership=membership, actor=actor)]
    audit_log(
        org=membership.organization,
        actor=actor,
        verb="member.deactivated",
        obj=membership,
        before={"is_active": True},
        after={
            "is_active": False,
            "by": "scim",
            "api_tokens_revoked": revoked,
            "leads": sorted(membership.led_teams.values_list("name", flat=True)),
            "handed_on": handed_on,
        },
    )
    if last_admin:
        organization_flag_missing_admin(org=membership.organization, actor=actor, leaver=membership)
    return membership


def _resync_group_members(org: Organization, memberships, actor: User | None) -> None:
    """Roles and mapped teams of these members as their SCIM groups now grant them, through the single sign-on's
    mapping (none configured: groups are only kept)."""
    sso = SingleSignOn.objects.for_org(org).select_related("organization").first()
    if sso is None:
        return
    for membership in memberships:
        if membership.is_active:
            groups = sorted(membership.scim_groups.values_list("display_name", flat=True))
            sync_from_groups(sso=sso, membership=membership, groups=groups, actor=actor)


@transaction.atomic
def scim_group_save(
    *,
    org: Organization,
    actor: User | None,
    group: ScimGroup | None,
    display_name: str | None,
    add: list[Membership] = (),
    remove: list[Membership] = (),
    replace: list[Membership] | None = None,
) -> ScimGroup:
    """Creates (group None) or changes a SCIM group; every member whose groups changed is re-synced."""
    created = group is None
    group = group or ScimGroup(organization=org)
    before = (
        None if created else {"displayName": group.display_name, "members": sorted(m.pk for m in group.members.all())}
    )
    if display_name is not None:
        name = " ".join(display_name.split())
        if not name:
            raise ValidationError("displayName must not be empty.", code="invalidValue")
        if ScimGroup.objects.for_org(org).filter(display_name=name).exclude(pk=group.pk).exists():
            raise ValidationError(f"A group named {name} exists already.", code="uniqueness")
        group.display_name = name
    group.save()
    old = set(group.members.all())
    new = set(replace) if replace is not None else (old | set(add)) - set(remove)
    group.members.set(new)
    audit_log(
        org=org,
        actor=actor,
        verb="identity.scim_group_created" if created else "identity.scim_group_changed",
        obj=group,
        before=before,
        after={"displayName": group.display_name, "members": sorted(m.pk for m in new)},
    )
    # A renamed group may grant another role: all its members; otherwise those who joined or left it.
    _resync_group_members(org, old | new if display_name is not None else old ^ new, actor)
    return group


@transaction.atomic
def scim_group_delete(*, group: ScimGroup, actor: User | None) -> None:
    members = list(group.members.all())
    audit_log(
        org=group.organization,
        actor=actor,
        verb="identity.scim_group_deleted",
        obj=group,
        before={"displayName": group.display_name, "members": sorted(m.pk for m in members)},
    )
    group.delete()
    _resync_group_members(group.organization, members, actor)

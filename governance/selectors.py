"""Reads shared by views, commands and tasks; every one takes the organization."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from governance import tenancy
from governance.models import (
    ApiToken,
    AuditEvent,
    Heartbeat,
    Invitation,
    Membership,
    Organization,
    Role,
    Secret,
    Team,
)
from governance.secrets import SecretMissing, decrypt, references


def active_admins(org: Organization | int) -> QuerySet[Membership]:
    """The admins who can still administer the organization: an active membership of an account that may sign in."""
    return Membership.objects.filter(organization=org, role=Role.ADMIN, is_active=True, user__is_active=True)


def admin_missing_since(*, org: Organization) -> datetime | None:
    """Since when the organization has had no active admin (the identity provider deactivated the last one), while
    that lasts; an organization never flagged costs no query."""
    if org.admin_missing_since is None or active_admins(org).exists():
        return None
    return org.admin_missing_since


@dataclass(frozen=True)
class TeamNode:
    team: Team
    depth: int
    member_count: int


def team_tree(*, org: Organization) -> list[TeamNode]:
    """Teams in tree order (parents before children, siblings by name), in two queries."""
    teams = list(
        Team.objects.for_org(org)
        .select_related("lead__user")
        .annotate(member_count=Count("memberships", filter=Q(memberships__is_active=True)))
        .order_by("name")
    )
    children: dict[int | None, list[Team]] = {}
    for team in teams:
        children.setdefault(team.parent_id, []).append(team)
    nodes: list[TeamNode] = []

    def walk(parent_id: int | None, depth: int) -> None:
        for team in children.get(parent_id, []):
            nodes.append(TeamNode(team, depth, team.member_count))
            walk(team.pk, depth + 1)

    walk(None, 0)
    return nodes


def member_list(*, org: Organization, include_inactive: bool = True) -> QuerySet[Membership]:
    qs = Membership.objects.for_org(org).select_related("user").prefetch_related("teams")
    if not include_inactive:
        qs = qs.filter(is_active=True)
    return qs.order_by("-is_active", "user__name")


def pending_invitations(*, org: Organization) -> QuerySet[Invitation]:
    return (
        Invitation.objects.for_org(org)
        .filter(accepted_at=None, revoked_at=None, expires_at__gt=timezone.now())
        .select_related("invited_by")
        .prefetch_related("teams")
    )


def expired_invitations(*, org: Organization) -> QuerySet[Invitation]:
    """Invitations that ran out unanswered and were not sent again (a new one supersedes them)."""
    return Invitation.objects.for_org(org).filter(accepted_at=None, revoked_at=None, expires_at__lte=timezone.now())


def audit_event_list(
    *,
    org: Organization,
    verb_prefix: str = "",
    actor_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str = "",
    object_type: str = "",
    object_id: str = "",
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.for_org(org).select_related("actor", "repeat")
    if object_type:
        qs = qs.filter(object_type=object_type, object_id=object_id)
    if verb_prefix:
        qs = qs.filter(verb__startswith=verb_prefix)
    if actor_id:
        qs = qs.filter(actor_id=actor_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if text:
        qs = qs.filter(Q(object_repr__icontains=text) | Q(verb__icontains=text))
    return qs


@dataclass(frozen=True)
class WorkerHealth:
    last_beat: datetime | None
    healthy: bool

    @property
    def age(self) -> timedelta | None:
        return timezone.now() - self.last_beat if self.last_beat else None


def worker_health() -> WorkerHealth:
    beat = Heartbeat.objects.filter(name="worker").first()
    last = beat.beat_at if beat else None
    return WorkerHealth(last, bool(last and timezone.now() - last <= settings.HEARTBEAT_STALE_AFTER))


def api_tokens_for(*, membership: Membership) -> QuerySet[ApiToken]:
    """Admins see every token of the organization; anyone else their own personal tokens."""
    tokens = ApiToken.objects.for_org(membership.organization).select_related("membership__user", "created_by")
    return tokens if membership.is_admin else tokens.filter(membership=membership)


# --- organization secrets -------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretRow:
    secret: Secret
    used_by: list[str]


def secret_list(*, org: Organization) -> list[SecretRow]:
    """The organization's secrets without their values, each with what names it."""
    used = references(org)
    secrets = Secret.objects.for_org(org).defer("ciphertext").select_related("set_by")
    return [SecretRow(secret, used.get(secret.name, [])) for secret in secrets]


def secret_names(*, org: Organization) -> set[str]:
    return set(Secret.objects.for_org(org).values_list("name", flat=True))


# Per (organization, name): the value, or the SecretMissing it raised; only inside `secrets_remembered()`.
_remembered: ContextVar[dict[tuple[int, str], str | SecretMissing] | None] = ContextVar("secrets", default=None)


@contextmanager
def secrets_remembered() -> Iterator[None]:
    """Inside the block each organization's secret is read and decrypted once, in that organization's own scope (a
    delivery batch sends many Slack messages with one bot token). Nothing outlives the block: the next one reads
    again, so a rotated or deleted secret holds from the next batch on."""
    reset = _remembered.set({})
    try:
        yield
    finally:
        _remembered.reset(reset)


def secret_value(*, org: Organization, name: str) -> str:
    """The value of the organization's secret `name`, read in the current scope: row-level security shows a
    secret only inside its own organization's scope, so a caller outside it finds it missing.

    Raises SecretMissing, whose message tells the admin what to set.
    """
    # Remembered only in the organization's own scope, so the cache never shows a secret where the database would not.
    remembered = _remembered.get() if tenancy.current().organization == org.pk else None
    if remembered is None:
        return _read_secret(org, name)
    if (org.pk, name) not in remembered:
        try:
            remembered[(org.pk, name)] = _read_secret(org, name)
        except SecretMissing as missing:
            remembered[(org.pk, name)] = missing
    known = remembered[(org.pk, name)]
    if isinstance(known, SecretMissing):
        raise SecretMissing(known.name, known.why)
    return known


def _read_secret(org: Organization, name: str) -> str:
    row = Secret.objects.for_org(org).filter(name=name).values_list("ciphertext", flat=True).first()
    if row is None:
        raise SecretMissing(name)
    return decrypt(row, name=name)

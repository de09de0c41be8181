from __future__ import annotations

import re
import zoneinfo
from datetime import time

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils.timezone import now
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and hyphens, not starting or ending with a hyphen.",
)
key_validator = RegexValidator(r"^[a-z0-9][a-z0-9._-]{0,63}$", "Use lowercase letters, digits, '.', '_' and '-'.")
# C0 and C1 controls (line breaks, tabs, NUL) and the Unicode line and paragraph separators.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def single_line_validator(value: str) -> None:
    """Names and other one-line text: a line break in a name ends up in an email header (a KPI named
    "Sales\r\nBcc: ..." made every email about it fail) or breaks a page's layout and log lines."""
    if CONTROL_CHARACTERS.search(value):
        raise ValidationError(
            "Use one line of text, without line breaks, tabs or other control characters.", code="control_character"
        )


def single_line(text: str) -> str:
    """`text` on one line, its runs of control characters and spaces made one space: for an email subject built
    from names stored before single_line_validator existed."""
    return " ".join(CONTROL_CHARACTERS.sub(" ", text).split())


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f'"{value}" is not an IANA time zone (for example Europe/Berlin).')


def default_business_days() -> list[str]:
    return WEEKDAYS[:5]


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        return self.create_user(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person; which organizations they see comes from their memberships only."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, validators=[single_line_validator])
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.name or self.email

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email


class Organization(models.Model):
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, validators=[single_line_validator])
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    business_days = models.JSONField(default=default_business_days)
    business_start = models.TimeField(default=time(9))
    business_end = models.TimeField(default=time(17))
    # Keys of escalation policies (escalations app); stored as keys so this layer need not import that one.
    default_escalation = models.CharField(max_length=64, blank=True)
    # Admins and executives who log in with a password confirm with a second factor (governance.identity).
    # The database default lets a rolling upgrade's previous release insert organizations without the column.
    require_two_factor = models.BooleanField(default=False, db_default=False)
    # Raw measurements older than this are rolled up into one point per KPI and day (scorecards.storage); empty
    # keeps every raw point.
    raw_measurement_days = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(7)])
    # Set when the identity provider deactivated the last active admin (which cannot be refused); the escalation
    # sweep tells the executives, and clears it once an active admin exists again.
    admin_missing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.business_start >= self.business_end:
            raise ValidationError({"business_end": "Business hours must end after they start."})
        unknown = set(self.business_days) - set(WEEKDAYS)
        if unknown or not self.business_days:
            raise ValidationError({"business_days": "Pick at least one weekday."})

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class TenantQuerySet(models.QuerySet):
    def for_org(self, org: Organization) -> TenantQuerySet:
        return self.filter(organization=org)


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    EXECUTIVE = "executive", "Executive"
    MEMBER = "member", "Member"


class Team(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    key = models.CharField(max_length=64, validators=[key_validator])
    name = models.CharField(max_length=200, validators=[single_line_validator])
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    lead = models.ForeignKey("Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="led_teams")
    escalation = models.CharField(max_length=64, blank=True, help_text="Default escalation policy key")
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="team_key_unique_per_org"),
            models.UniqueConstraint(fields=["organization", "name"], name="team_name_unique_per_org"),
        ]
        permissions = [("manage_team", "Manage the team's members and settings")]

    def __str__(self) -> str:
        return self.name

    def ancestors(self) -> list[Team]:
        """Parents up to the top, nearest first, from the database (an unsaved parent may form a loop)."""
        chain: list[Team] = []
        parent_id = self.parent_id
        while parent_id and parent_id != self.pk and parent_id not in {t.pk for t in chain}:
            parent = Team.objects.get(pk=parent_id)
            chain.append(parent)
            parent_id = parent.parent_id
        return chain


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    teams = models.ManyToManyField(Team, blank=True, related_name="memberships")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["user__name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user.name} <{self.user.email}>"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_executive(self) -> bool:
        return self.role == Role.EXECUTIVE


class Invitation(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    teams = models.ManyToManyField(Team, blank=True, related_name="invitations")
    # Only the SHA-256 of the token is stored; the token itself travels once, in the email.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live invitation per address and organization; used or revoked ones stay as history.
            models.UniqueConstraint(
                Lower("email"),
                "organization",
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation for {self.email} to {self.organization}"

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= now():
            return "expired"
        return "pending"


class AuditEvent(models.Model):
    """Append-only record of every important write; on PostgreSQL a trigger refuses UPDATE and DELETE."""

    # Null only for security events about no known user (a failed login for an unknown email): no organization
    # owns those; operators read them in the database. Every other event belongs to one organization.
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    verb = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=now, db_index=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="audit_org_time")]

    def __str__(self) -> str:
        return f"{self.verb} {self.object_repr}"

    @property
    def times(self) -> int:
        """How often it happened: a security event repeated within its minute is one row (SecurityEventRepeat)."""
        repeat = getattr(self, "repeat", None)  # the reverse one-to-one raises an AttributeError when missing
        return repeat.count if repeat else 1

    @property
    def changes(self) -> list[tuple[str, object, object]]:
        before, after = self.before or {}, self.after or {}
        return [
            (field, before.get(field), after.get(field))
            for field in sorted(set(before) | set(after))
            if before.get(field) != after.get(field)
        ]


class SecurityEventRepeat(models.Model):
    """How often one security event (same organization, actor or address, verb and object) recurred within its
    minute. The audit log is append-only, so the first event of the minute is its row and this one keeps the count:
    a stranger repeating a forbidden URL leaves one row a minute, not one per request."""

    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=255, unique=True)  # governance.services.audit.security_event_key
    event = models.OneToOneField(AuditEvent, on_delete=models.PROTECT, related_name="repeat")
    count = models.PositiveIntegerField(default=1)
    last_at = models.DateTimeField(default=now)

    def __str__(self) -> str:
        return f"{self.event} ×{self.count}"


class Scope(models.TextChoices):
    """What an organization token may do (API.md). A personal token has none: it acts as its member."""

    MEASUREMENTS_WRITE = "measurements:write", "measurements:write: send measurements"
    READ = "read", "read: KPIs, workstreams, tasks, notifications, decisions, the manifest"
    MANIFEST_WRITE = "manifest:write", "manifest:write: apply a manifest (teams, KPIs, OKRs, ownership)"
    ADMIN = "admin", "admin: a manifest that changes members, roles and invitations"
    SCIM = "scim", "scim: provision and deactivate members from your identity provider (SCIM 2.0)"


class ApiToken(models.Model):
    """A bearer token for /api/v1/: the organization's own (no member), or a member's personal one.

    An organization token carries `scopes` (Scope values); a new one sends measurements only, so a leaked
    loader's token cannot rewrite the organization. Only an HMAC of the token is stored (keyed by API_TOKEN_KEY,
    not SECRET_KEY, so a leaked database or a rotated SECRET_KEY leaves tokens neither usable nor broken);
    `prefix` identifies it in lists.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    membership = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, validators=[single_line_validator])
    prefix = models.CharField(max_length=16)
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_audited_at = models.DateTimeField(null=True, blank=True)  # the last security.api_token_* audit event
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    scopes = models.JSONField(default=list, blank=True)  # Scope values, in Scope's order; [] for personal tokens

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def is_personal(self) -> bool:
        return self.membership_id is not None


secret_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{0,63}$", "Use 1-64 lowercase letters, digits and '_', starting with a letter."
)


class Secret(models.Model):
    """A credential of the organization (a warehouse DSN, an API token) that its data sources name.

    Only the Fernet ciphertext is stored (governance.secrets); pages and the API show the name and a keyed
    fingerprint, never the value. Row-level security shows a row only in its own organization's scope: not even
    the beat's system scope reads it (governance.rls.ORGANIZATION_ONLY).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=64, validators=[secret_name_validator])
    ciphertext = models.BinaryField()
    fingerprint = models.CharField(max_length=16)
    set_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    set_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="secret_name_unique")]

    def __str__(self) -> str:
        return self.name


class Heartbeat(models.Model):
    """Last time a Celery worker ran the beat's heartbeat sweep: proof that beat, broker and worker work."""

    name = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


# Direct foreign keys instead of guardian's generic tables: joins stay indexed and tenant rows stay typed.
class TeamUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)


class TeamGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)


# Enterprise identity's models live in their sub-package; imported here so that they belong to this app.
from governance.identity.models import ScimGroup, SingleSignOn, SsoDomain  # noqa: E402, F401

"""Enterprise identity: an organization's OpenID Connect identity provider and the email domains it covers.

Imported by governance.models, so the app label stays `governance` and the tables are walled in like the others
(governance.rls; a covered domain is readable by a caller presenting it, before the organization is known).
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.timezone import now

from governance.models import Organization, TenantQuerySet, User, secret_name_validator

domain_validator = RegexValidator(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    "Use a domain name such as example.com (lowercase, no @).",
)


class SingleSignOn(models.Model):
    """One organization's OpenID Connect provider (authorization code with PKCE).

    The client secret is an organization secret named `client_secret_name` (governance.secrets), never stored
    here. `group_mapping` is a list of [group, target] pairs: a target is a role ("admin", "executive",
    "member") or "team:<key>"; the highest role among a person's groups wins, else `member`.
    """

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="single_sign_on")
    issuer = models.URLField(max_length=300)
    client_id = models.CharField(max_length=200)
    client_secret_name = models.CharField(max_length=64, validators=[secret_name_validator])
    groups_claim = models.CharField(max_length=64, default="groups")
    group_mapping = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Members' password logins and resets are refused (except the operator's break-glass admins).
    require_sso = models.BooleanField(default=False)
    updated_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Single sign-on via {self.issuer}"


class SsoDomain(models.Model):
    """An email domain an organization's identity provider covers; one organization per domain."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="sso_domains")
    domain = models.CharField(max_length=253, unique=True, validators=[domain_validator])

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class ScimGroup(models.Model):
    """A group the identity provider pushes over SCIM, with its members; its name is what the single sign-on's
    group mapping reads, so membership changes re-sync roles and teams as a sign-in does."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    display_name = models.CharField(max_length=200)
    members = models.ManyToManyField("governance.Membership", blank=True, related_name="scim_groups")
    created_at = models.DateTimeField(default=now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "display_name"], name="scim_group_name_unique"),
        ]

    def __str__(self) -> str:
        return self.display_name

"""The one place where views and tasks fetch tenant objects and check roles."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from governance import tenancy
from governance.models import Invitation, Membership, Role, Secret, Team
from governance.services import audit_log

if TYPE_CHECKING:
    from scorecards.models import Kpi

M = TypeVar("M", bound=Model)


def get_for_org_or_404(request: HttpRequest, queryset: type[M] | QuerySet[M], pk) -> M:
    """The object `pk` of the request's organization; 404 for any other organization's id (and audited)."""
    qs = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    try:
        return qs.get(organization=request.org, pk=pk)
    except (qs.model.DoesNotExist, ValueError, TypeError):
        # Whether the id is another organization's decides whether this was a probe worth auditing: a yes or no
        # that only the system scope can give (row-level security hides the row itself).
        with tenancy.scope(system=True):
            foreign = qs.model._default_manager.filter(pk=pk).exclude(organization=request.org).exists()
        if foreign:
            audit_log(
                org=request.org,
                actor=request.user,
                verb="security.foreign_id",
                after={"model": qs.model._meta.label_lower, "id": str(pk), "path": request.path},
            )
        raise Http404(f"No such {qs.model._meta.verbose_name}.") from None


def get_team_for_member_or_404(request: HttpRequest, team_id) -> Team:
    return get_for_org_or_404(request, Team.objects.select_related("parent", "lead__user"), team_id)


def get_membership_for_member_or_404(request: HttpRequest, membership_id) -> Membership:
    return get_for_org_or_404(request, Membership.objects.select_related("user"), membership_id)


def get_invitation_for_member_or_404(request: HttpRequest, invitation_id) -> Invitation:
    return get_for_org_or_404(request, Invitation, invitation_id)


def get_secret_or_404(org, name: str) -> Secret:
    """A secret by its name, which is the organization's own namespace: no name can point into another one."""
    secret = Secret.objects.for_org(org).filter(name=name).first()
    if secret is None:
        raise Http404("No such secret.")
    return secret


def deny(request: HttpRequest, what: str) -> PermissionDenied:
    audit_log(
        org=request.org,
        actor=request.user,
        verb="security.permission_denied",
        after={"what": what, "path": request.path, "method": request.method},
    )
    return PermissionDenied(f"Only {what} may do this.")


def can_manage_team(membership: Membership, team: Team) -> bool:
    # Admins manage every team; a team's lead is granted the object permission when appointed.
    return membership.is_admin or membership.user.has_perm("governance.manage_team", team)


def can_configure_kpi(membership: Membership, kpi: Kpi) -> bool:
    # Admins and the owner by role; anyone else only with guardian's object permission on this KPI.
    return (
        membership.is_admin
        or kpi.owner_id == membership.pk
        or membership.user.has_perm("scorecards.configure_kpi", kpi)
    )


def role_required(*roles: str) -> Callable:
    """For organization views: the member's role must be one of `roles`, else 403 (audited)."""
    names = " or ".join(f"{Role(r).label.lower()}s" for r in roles)

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.membership is None:
                raise Http404
            if request.membership.role not in roles:
                raise deny(request, names)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


admin_required = role_required(Role.ADMIN)

"""The one place where views and tasks fetch tenant objects and check roles."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import wraps
from typing import TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest

from governance.models import Invitation, Membership, Role, Secret, Team
from governance.services.audit import audit_log

M = TypeVar("M", bound=Model)


def get_for_org_or_404(request: HttpRequest, queryset: type[M] | QuerySet[M], pk) -> M:
    """The object `pk` of the request's organization; 404 for any other organization's id (and audited)."""
    qs = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    try:
        found = qs.get(organization=request.org, pk=pk)
    except (qs.model.DoesNotExist, ValueError, TypeError):
        if _elsewhere(qs.model, pk, request.org):
            audit_log(
                org=request.org,
                actor=request.user,
                verb="security.foreign_id",
                after={"model": qs.model._meta.label_lower, "id": str(pk), "path": request.path},
            )
        raise Http404(f"No such {qs.model._meta.verbose_name}.") from None
    found.organization = request.org  # the same row, already read: `found.organization` costs no query
    return found


def _elsewhere(model: type[Model], pk, org) -> bool:
    """Whether `pk` is another organization's id, which decides whether this was a probe worth auditing.

    Row-level security hides the row itself, and a web request may not enter the system scope (its database role
    is no member of governance.rls.SYSTEM_ROLE): on PostgreSQL a function running as the owner answers this one
    yes-or-no question."""
    try:
        pk = model._meta.pk.to_python(pk)
    except ValidationError:
        return False
    if connection.vendor != "postgresql":
        return model._default_manager.filter(pk=pk).exclude(organization=org).exists()
    if not isinstance(pk, int) or not -(2**63) <= pk < 2**63:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT steerco_elsewhere(%s::regclass, %s, %s)", [model._meta.db_table, pk, org.pk])
        return cursor.fetchone()[0]


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


def _audit_refusal(request: HttpRequest, what: str) -> None:
    audit_log(
        org=request.org,
        actor=request.user,
        verb="security.permission_denied",
        after={"what": what, "path": request.path, "method": request.method},
    )


def deny(request: HttpRequest, what: str) -> PermissionDenied:
    _audit_refusal(request, what)
    return PermissionDenied(f"Only {what} may do this.")


def can_manage_team(membership: Membership, team: Team) -> bool:
    # Admins manage every team; a team's lead is granted the object permission when appointed.
    return membership.is_admin or membership.user.has_perm("governance.manage_team", team)


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


# --- four eyes: who may decide what (SEMANTICS.md section 3) ---------------------------------------------------

# Every kind of decision, with the roles that take it; `also` (below) adds the people a given case names.
DECISION_ROLES: dict[str, tuple[str, ...]] = {
    "path_review": (Role.EXECUTIVE,),  # and anyone an escalation task of the episode went to
    "workstream_close": (Role.EXECUTIVE,),
    "transfer_decide": (Role.ADMIN, Role.EXECUTIVE),
    "transfer_request": (Role.ADMIN, Role.EXECUTIVE),  # and the KPI's owner
    "target_change": (Role.ADMIN, Role.EXECUTIVE),
    "risk_accept": (Role.ADMIN, Role.EXECUTIVE),
    "action_assign": (Role.ADMIN, Role.EXECUTIVE),
    "review_no_impact": (),  # only the people the review's tasks went to
    "manual_value": (),  # only the approver the manual KPI names (a member, or a role's members)
}
DECIDERS_IN_WORDS = {
    "path_review": "executives and the people this episode was escalated to",
    "workstream_close": "executives",
    "transfer_decide": "an admin or executive other than the requester",
    "transfer_request": "the owner, admins and executives",
    "target_change": "executives and admins",
    "risk_accept": "executives and admins",
    "action_assign": "executives and admins",
    "review_no_impact": "the review's assignee",
    "manual_value": "the KPI's named approver",
}
FOUR_EYES = {
    "path_review": "the KPI's owner and the path's filer never review that path",
    "workstream_close": "the KPI's owner and the path's filer never close that workstream",
    "transfer_decide": "the requester never decides a transfer",
    "target_change": "the KPI's owner never changes its target as a decision",
    "risk_accept": "the KPI's owner and the path's filer never accept the risk of their own episode",
    "review_no_impact": "the owner of the upstream KPI never answers “no impact” on the downstream owner's behalf",
    "manual_value": "whoever entered a value never confirms it",
}
SELF_APPROVED = "self-approved: no second person in the organization"


@dataclass(frozen=True)
class Authority:
    """The answer to "may this person decide this?": allowed or not (with the refusal in words), and whether it is
    a self-approval (allowed only because nobody else in the organization may decide)."""

    allowed: bool
    self_approved: bool = False
    refusal: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def decision_authority(
    *, kind: str, by: Membership, interested: Collection[int] = (), also: Collection[int] = ()
) -> Authority:
    """The one authority rule for every decision, from plain facts: the deciding membership, the kind, the user ids
    with an interest in the outcome (the KPI's owner, the path's filer, the transfer's requester), and the
    membership ids this case makes eligible beyond the kind's roles (the people an episode escalated to).

    Nobody decides on their own work; only when nobody else in the organization may decide is an interested
    person's decision allowed (they must be eligible, or an admin or executive), and then it is self-approved."""
    roles = DECISION_ROLES[kind]
    eligible = by.is_active and (by.role in roles or by.pk in also)
    if by.user_id not in interested:
        if eligible:
            return Authority(True)
        return Authority(False, refusal=f"Only {DECIDERS_IN_WORDS[kind]} may decide this.")
    others = (
        Membership.objects.filter(organization_id=by.organization_id, is_active=True)
        .filter(Q(role__in=roles) | Q(pk__in=list(also)))
        .exclude(user_id__in=list(interested))
    )
    if others.exists():
        return Authority(False, refusal=f"Four eyes: {FOUR_EYES[kind]}; someone else in the organization decides.")
    if eligible or (by.is_active and by.role in (Role.ADMIN, Role.EXECUTIVE)):
        return Authority(True, self_approved=True)
    return Authority(False, refusal=f"Only {DECIDERS_IN_WORDS[kind]} may decide this.")


def refuse(request: HttpRequest, refusal: str) -> PermissionDenied:
    """A refused decision (an Authority's refusal, or a service's) as a 403, audited like `deny`."""
    _audit_refusal(request, refusal)
    return PermissionDenied(refusal)


REASON_REQUIRED = "Every decision needs its reason on record."


def decision_reason(reason: str) -> str:
    """The reason of a decision as recorded; every service checks it here, so every page says the same."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": REASON_REQUIRED})
    return reason

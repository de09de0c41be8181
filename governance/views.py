from __future__ import annotations

from datetime import datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from governance import audit_entries, exports, selectors
from governance.access import (
    admin_required,
    can_manage_team,
    deny,
    get_for_org_or_404,
    get_invitation_for_member_or_404,
    get_membership_for_member_or_404,
    get_secret_or_404,
    get_team_for_member_or_404,
    role_required,
)
from governance.forms import (
    ApiTokenForm,
    AuditFilterForm,
    InvitationSignupForm,
    InviteForm,
    OrganizationCreateForm,
    OrganizationSettingsForm,
    RoleForm,
    SecretForm,
    TeamForm,
    TeamMembersForm,
    apply_errors,
)
from governance.models import ApiToken, Role
from governance.services import api_tokens as tokens
from governance.services import invitations, members, organizations, secrets, teams

# --- outside any organization -------------------------------------------------------------------


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    health = selectors.worker_health()
    return JsonResponse(
        {
            "database": "ok",
            "worker": "ok" if health.healthy else "stale",
            "last_heartbeat": health.last_beat.isoformat() if health.last_beat else None,
        }
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    memberships = list(request.user.memberships.filter(is_active=True).select_related("organization"))
    if len(memberships) == 1:
        return redirect("scorecards:overview", org_slug=memberships[0].organization.slug)
    return render(request, "governance/home.html", {"memberships": memberships})


@login_required
@require_http_methods(["GET", "POST"])
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationCreateForm(request.POST or None)
    if form.is_valid():
        try:
            org = organizations.organization_create(
                creator=request.user,
                slug=form.cleaned_data["slug"],
                name=form.cleaned_data["name"],
                timezone_name=form.cleaned_data["timezone"],
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"{org} is ready. Invite your colleagues next.")
            return redirect("governance:member_list", org_slug=org.slug)
    return render(request, "governance/organization_create.html", {"form": form})


# The emailed invitation link's token, kept in the visitor's session once the link is opened.
INVITATION_SESSION_KEY = "invitation_token"


@require_GET
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link: checks the token, keeps it in the visitor's session and sends them on to the invitation's
    page, whose address holds no token. Only this one request carries the token in its URL; the page, its form's
    POST, a detour through the login page and the redirect after joining do not, so it does not spread through
    access logs, browser history and Referer headers."""
    try:
        invitations.invitation_for_token(token)
    except ValidationError as e:
        return render(request, "governance/invitation_invalid.html", {"error": e.messages[0]}, status=410)
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("governance:invitation_join")


@require_http_methods(["GET", "POST"])
def invitation_join(request: HttpRequest) -> HttpResponse:
    token = request.session.get(INVITATION_SESSION_KEY, "")
    try:
        invitation = invitations.invitation_for_token(token)
    except ValidationError as e:
        error = e.messages[0] if token else "Open the link in your invitation email to join."
        return render(request, "governance/invitation_invalid.html", {"error": error}, status=410)
    user = request.user if request.user.is_authenticated else None
    form = InvitationSignupForm(request.POST or None, email=invitation.email) if user is None else None
    if request.method == "POST" and (form is None or form.is_valid()):
        try:
            membership = invitations.invitation_accept(
                token=token,
                user=user,
                name=form.cleaned_data["name"] if form else "",
                password=form.cleaned_data["password1"] if form else "",
            )
        except ValidationError as e:
            if form is None:
                return render(request, "governance/invitation_invalid.html", {"error": e.messages[0]}, status=409)
            apply_errors(form, e)
        else:
            del request.session[INVITATION_SESSION_KEY]
            if user is None:
                login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to {membership.organization}.")
            return redirect("scorecards:overview", org_slug=membership.organization.slug)
    return render(request, "governance/invitation_accept.html", {"invitation": invitation, "form": form})


# --- inside an organization (request.org and request.membership set by TenantMiddleware) -------


@admin_required
@require_http_methods(["GET", "POST"])
def organization_settings(request: HttpRequest) -> HttpResponse:
    org = request.org
    form = OrganizationSettingsForm(request.POST or None, instance=org)
    if request.method == "POST":
        if form.is_valid():
            try:
                organizations.organization_update(
                    org=org,
                    actor=request.user,
                    **{name: form.cleaned_data[name] for name in form.Meta.fields},
                )
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, "Settings saved.")
                return redirect("governance:organization_settings", org_slug=org.slug)
        org.refresh_from_db()  # the form's failed assignment must not leak into the page's header
    return render(request, "governance/organization_settings.html", {"form": form})


@require_http_methods(["GET", "POST"])
def team_list(request: HttpRequest) -> HttpResponse:
    form = TeamForm(request.POST or None, org=request.org)
    if request.method == "POST":
        if not request.membership.is_admin:
            raise deny(request, "admins")
        if form.is_valid():
            try:
                team = teams.team_create(org=request.org, actor=request.user, **form.cleaned_data)
            except ValidationError as e:
                apply_errors(form, e)
            else:
                messages.success(request, f"Team {team} created.")
                if request.htmx:
                    return HttpResponseClientRefresh()
                return redirect("governance:team_list", org_slug=request.org.slug)
    template = "governance/teams.html#create-form" if request.htmx else "governance/teams.html"
    return render(request, template, {"teams": selectors.team_tree(org=request.org), "form": form})


@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_team_for_member_or_404(request, team_id)
    is_admin = request.membership.is_admin
    may_manage = can_manage_team(request.membership, team)
    edit_form = TeamForm(instance=team, org=request.org) if is_admin else None
    members_form = (
        TeamMembersForm(org=request.org, initial={"members": team.memberships.filter(is_active=True)})
        if may_manage
        else None
    )
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "edit":
            if not is_admin:
                raise deny(request, "admins")
            edit_form = TeamForm(request.POST, instance=team, org=request.org)
            if edit_form.is_valid():
                fields = {k: edit_form.cleaned_data[k] for k in ("name", "key", "parent", "lead")}
                try:
                    teams.team_update(team=team, actor=request.user, **fields)
                except ValidationError as e:
                    apply_errors(edit_form, e)
                else:
                    messages.success(request, "Team saved.")
                    return redirect("governance:team_detail", org_slug=request.org.slug, team_id=team.pk)
            team.refresh_from_db()
        elif action == "members":
            if not may_manage:
                raise deny(request, "admins and the team's lead")
            members_form = TeamMembersForm(request.POST, org=request.org)
            if members_form.is_valid():
                teams.team_set_members(team=team, actor=request.user, members=members_form.cleaned_data["members"])
                messages.success(request, "Members saved.")
                return redirect("governance:team_detail", org_slug=request.org.slug, team_id=team.pk)
        else:
            messages.error(request, "Unknown action.")
    return render(
        request,
        "governance/team_detail.html",
        {
            "team": team,
            "members": team.memberships.filter(is_active=True).select_related("user").order_by("user__name"),
            "children": team.children.order_by("name"),
            "edit_form": edit_form,
            "members_form": members_form,
        },
    )


def _members_page(request: HttpRequest, invite_form: InviteForm | None = None, status: int = 200) -> HttpResponse:
    return render(
        request,
        "governance/members.html",
        {
            "members": selectors.member_list(org=request.org),
            "invitations": selectors.pending_invitations(org=request.org),
            "expired_invitations": selectors.expired_invitations(org=request.org),
            "invite_form": invite_form or InviteForm(org=request.org),
            "roles": Role.choices,
        },
        status=status,
    )


@admin_required
@require_http_methods(["GET", "POST"])
def member_list(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _members_page(request)
    form = InviteForm(request.POST, org=request.org)
    if form.is_valid():
        try:
            invitation, _token = invitations.invitation_create(
                org=request.org,
                actor=request.user,
                base_url=request.build_absolute_uri("/")[:-1],
                **form.cleaned_data,
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("governance:member_list", org_slug=request.org.slug)
    return _members_page(request, form, status=422)


def _member_row(request: HttpRequest, membership, error: str = "", notice: str = "") -> HttpResponse:
    """The member's row again, saying what changed (or why nothing did)."""
    membership.refresh_from_db()
    if request.htmx:
        return render(
            request,
            "governance/members.html#member-row",
            {"m": membership, "roles": Role.choices, "row_error": error, "row_notice": notice},
        )
    if error:
        messages.error(request, error)
    elif notice:
        messages.success(request, notice)
    return redirect("governance:member_list", org_slug=request.org.slug)


@admin_required
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_membership_for_member_or_404(request, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _member_row(request, membership, "Pick a role.")
    before = membership.get_role_display()
    try:
        members.membership_change_role(membership=membership, actor=request.user, role=form.cleaned_data["role"])
    except ValidationError as e:
        return _member_row(request, membership, " ".join(e.messages))
    membership.refresh_from_db()
    if membership.get_role_display() == before:
        return _member_row(request, membership, notice=f"{membership.user.name} stays {before.lower()}.")
    after = membership.get_role_display().lower()
    return _member_row(request, membership, notice=f"{membership.user.name} is now {after} (was {before.lower()}).")


@admin_required
@require_POST
def member_deactivate(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_membership_for_member_or_404(request, membership_id)
    if membership.user_id == request.user.pk:
        return _member_row(request, membership, "You cannot deactivate yourself.")
    try:
        members.membership_set_active(membership=membership, actor=request.user, active=False)
    except ValidationError as e:
        return _member_row(request, membership, " ".join(e.messages))
    name = membership.user.name
    return _member_row(request, membership, notice=f"{name} is deactivated and can no longer sign in here.")


@admin_required
@require_POST
def member_reactivate(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_membership_for_member_or_404(request, membership_id)
    members.membership_set_active(membership=membership, actor=request.user, active=True)
    return _member_row(request, membership, notice=f"{membership.user.name} is active again.")


@admin_required
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = get_invitation_for_member_or_404(request, invitation_id)
    try:
        invitations.invitation_revoke(invitation=invitation, actor=request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"Invitation for {invitation.email} revoked.")
    return redirect("governance:member_list", org_slug=request.org.slug)


@admin_required
@require_POST
def invitation_resend(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = get_invitation_for_member_or_404(request, invitation_id)
    try:
        invitations.invitation_resend(
            invitation=invitation, actor=request.user, base_url=request.build_absolute_uri("/")[:-1]
        )
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"A new invitation was sent to {invitation.email}.")
    return redirect("governance:member_list", org_slug=request.org.slug)


@role_required(Role.ADMIN, Role.EXECUTIVE)
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None, org=request.org)
    filters, one_object = {}, ""
    if form.is_valid():
        tz = request.org.tzinfo
        data = form.cleaned_data
        object_type, _, object_id = data["object"].partition(":")
        if object_type:
            one_object = audit_entries.object_filter_label(request.org, object_type, object_id)
        filters = {
            "object_type": object_type,
            "object_id": object_id,
            "verb_prefix": data["verb"],
            "actor_id": data["actor"].user_id if data["actor"] else None,
            "text": data["q"],
            # Dates are the organization's calendar days, not UTC days.
            "since": datetime.combine(data["since"], time(), tz) if data["since"] else None,
            "until": datetime.combine(data["until"] + timedelta(days=1), time(), tz) if data["until"] else None,
        }
    if fmt := exports.requested_format(request):
        columns = ["When", "Actor", "Event", "Object type", "Object", "Object id", "Request id"]
        rows = (
            [
                e.created_at,
                e.actor.name if e.actor else "",
                e.verb,
                e.object_type,
                e.object_repr,
                e.object_id,
                e.request_id,
            ]
            for e in selectors.audit_event_list(org=request.org, **filters)
        )
        return exports.export_response(fmt=fmt, name="audit-log", columns=columns, rows=rows, tz=request.org.tzinfo)
    page = Paginator(selectors.audit_event_list(org=request.org, **filters), 50).get_page(request.GET.get("page"))
    template = "governance/audit.html#results" if request.htmx else "governance/audit.html"
    context = {
        "form": form,
        "page": page,
        "entries": audit_entries.entries(list(page.object_list), org=request.org),
        "one_object": one_object,
        "query": _query_without_page(request),
        "without_object": _query_without_page(request, "object"),
    }
    return render(request, template, context)


def _query_without_page(request: HttpRequest, *also: str) -> str:
    query = request.GET.copy()
    for name in ("page", *also):
        query.pop(name, None)
    return query.urlencode()


# --- organization secrets -----------------------------------------------------------------------


@admin_required
@require_http_methods(["GET", "POST"])
def secret_list(request: HttpRequest) -> HttpResponse:
    """The organization's secrets by name and fingerprint, and the form that sets or replaces one."""
    form = SecretForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    if request.method == "POST" and form.is_valid():
        try:
            secret = secrets.secret_set(
                org=request.org, actor=request.user, name=form.cleaned_data["name"], value=form.cleaned_data["value"]
            )
        except ValidationError as e:
            apply_errors(form, e)
        else:
            messages.success(request, f"Secret {secret.name} saved (fingerprint {secret.fingerprint}).")
            return redirect("governance:secrets", org_slug=request.org.slug)
    context = {"form": form, "rows": selectors.secret_list(org=request.org)}
    return render(request, "governance/secrets.html", context, status=422 if form.errors else 200)


@admin_required
@require_POST
def secret_delete(request: HttpRequest, name: str) -> HttpResponse:
    secret = get_secret_or_404(request.org, name)
    try:
        secrets.secret_delete(secret=secret, actor=request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"Secret {secret.name} deleted.")
    return redirect("governance:secrets", org_slug=request.org.slug)


# --- API tokens ---------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """Personal tokens for everyone, organization tokens for admins; a new token is shown once, here."""
    form = ApiTokenForm(request.POST or None, membership=request.membership)
    created, status = None, 200
    if request.method == "POST":
        if form.is_valid():
            personal = form.cleaned_data["kind"] == ApiTokenForm.PERSONAL
            try:
                created = tokens.api_token_create(
                    org=request.org,
                    actor=request.user,
                    name=form.cleaned_data["name"],
                    membership=request.membership if personal else None,
                    scopes=None if personal else form.cleaned_data["scopes"],
                )
            except ValidationError as e:
                apply_errors(form, e)
            else:
                form = ApiTokenForm(membership=request.membership)
        status = 200 if created else 422
    context = {
        "form": form,
        "created": created,
        "tokens": selectors.api_tokens_for(membership=request.membership),
        "api_base": request.build_absolute_uri("/api/v1/"),
    }
    return render(request, "governance/api_tokens.html", context, status=status)


@require_POST
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    api_token = get_for_org_or_404(request, ApiToken, token_id)
    if not (request.membership.is_admin or api_token.membership_id == request.membership.pk):
        raise deny(request, "admins or the token's owner")
    try:
        tokens.api_token_revoke(api_token=api_token, actor=request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, f"Token {api_token.prefix}… is revoked; requests with it are refused from now on.")
    return redirect("governance:api_tokens", org_slug=request.org.slug)

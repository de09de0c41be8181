"""SCIM 2.0 (RFC 7643/7644) `/scim/v2/Users` and `/Groups` for identity providers (Okta, Entra ID): list with a
filter, read, create, replace, patch and delete an organization's members (delete deactivates) and groups.

The provider authenticates with an organization API token carrying the `scim` scope (Administration → API
tokens); every row read or written is that organization's (governance.tenancy). A user's `id` is their membership's.
PATCH takes both dialects: Okta's `{"op": "replace", "value": {"active": false}}` and Entra ID's
`{"op": "Replace", "path": "active", "value": "False"}`.
"""

from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from governance.identity import services
from governance.identity.models import ScimGroup
from governance.models import Membership, Scope
from governance.security import client_ip
from governance.services.api_tokens import api_token_authenticate

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
CONTENT_TYPE = "application/scim+json"
MAX_COUNT = 200
# The filters providers send for users: `userName eq "a@b.c"` (Okta, Entra ID), `externalId eq "..."` is not kept.
FILTER = re.compile(r'^\s*(userName|emails\.value|emails\[type eq "work"\]\.value)\s+eq\s+"([^"]*)"\s*$', re.I)


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def _response(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE)


def _error(e: ScimError) -> JsonResponse:
    body = {"schemas": [ERROR_SCHEMA], "status": str(e.status), "detail": e.detail}
    if e.scim_type:
        body["scimType"] = e.scim_type
    return _response(body, e.status)


def _resource(request: HttpRequest, membership: Membership) -> dict:
    user = membership.user
    given, _, family = user.name.partition(" ")
    return {
        "schemas": [USER_SCHEMA],
        "id": str(membership.pk),
        "userName": user.email,
        "name": {"formatted": user.name, "givenName": given, "familyName": family},
        "displayName": user.name,
        "emails": [{"value": user.email, "type": "work", "primary": True}],
        "active": membership.is_active,
        "meta": {
            "resourceType": "User",
            "created": membership.created_at.isoformat(),
            "location": request.build_absolute_uri(f"/scim/v2/Users/{membership.pk}"),
        },
    }


def _body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        raise ScimError(400, "The body is not JSON.", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    return body


def _bool(value) -> bool:
    """`active` as providers send it: true/false, or Entra ID's "True"/"False" strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ScimError(400, f"active must be true or false, not {value!r}.", "invalidValue")


def _name(body: dict) -> str | None:
    name = body.get("name") if isinstance(body.get("name"), dict) else {}
    parts = [name.get("givenName"), name.get("familyName")]
    return name.get("formatted") or " ".join(p for p in parts if p) or body.get("displayName") or None


def _authenticate(request: HttpRequest):
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    api_token = (
        api_token_authenticate(token.strip(), ip=client_ip(request), path=request.path)
        if scheme.lower() == "bearer"
        else None
    )
    if api_token is None:
        raise ScimError(401, "Send an organization API token with the scim scope: Authorization: Bearer stc_...")
    if api_token.is_personal or not api_token.has_scope(Scope.SCIM):
        raise ScimError(403, 'This token lacks the "scim" scope; create an organization token with it.')
    return api_token


def _membership(api_token, user_id: str) -> Membership:
    membership = (
        Membership.objects.for_org(api_token.organization)
        .select_related("user", "organization")
        .filter(pk=int(user_id) if str(user_id).isdigit() else -1)
        .first()
    )
    if membership is None:
        raise ScimError(404, f"No user {user_id} in this organization.")
    return membership


def _list(request: HttpRequest, queryset, *, filters: re.Pattern, field: str, resource) -> JsonResponse:
    """A ListResponse page (startIndex is 1-based), narrowed by the one `eq` filter the resource supports."""
    expression = request.GET.get("filter", "")
    if expression:
        match = filters.match(expression)
        if match is None:
            raise ScimError(400, f'Unsupported filter {expression!r}: use {field} eq "...".', "invalidFilter")
        queryset = queryset.filter(**{f"{field}__iexact": match.group(2)})
    try:
        start = max(int(request.GET.get("startIndex", 1)), 1)
        count = min(max(int(request.GET.get("count", 100)), 0), MAX_COUNT)
    except ValueError:
        raise ScimError(400, "startIndex and count must be integers.", "invalidValue") from None
    page = list(queryset[start - 1 : start - 1 + count])
    return _response(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": queryset.count(),
            "startIndex": start,
            "itemsPerPage": len(page),
            "Resources": [resource(request, item) for item in page],
        }
    )


def _patch(body: dict) -> tuple[str | None, bool | None]:
    """The name and active state a PatchOp sets, in Okta's and Entra ID's dialects."""
    if PATCH_SCHEMA not in body.get("schemas", []):
        raise ScimError(400, f"A PATCH body names the schema {PATCH_SCHEMA}.", "invalidSyntax")
    name, active = None, None
    for operation in body.get("Operations") or []:
        op = str(operation.get("op", "")).lower()
        if op not in ("replace", "add"):
            raise ScimError(400, f"Unsupported op {operation.get('op')!r} for a user.", "invalidValue")
        path, value = operation.get("path"), operation.get("value")
        changes = value if path is None and isinstance(value, dict) else {path: value}
        for attribute, new in changes.items():
            key = str(attribute).lower()
            if key == "active":
                active = _bool(new)
            elif key in ("displayname", "name.formatted"):
                name = str(new)
            elif key == "name" and isinstance(new, dict):
                name = _name({"name": new})
            # Anything else (name parts, which come with displayName too; the address, which is the account's
            # identity; title, department, locale) Steerco does not keep: refusing it would stop the provider's
            # whole sync for one attribute.
    return name, active


def _dispatch(request: HttpRequest, user_id: str | None) -> JsonResponse | HttpResponse:
    api_token = _authenticate(request)
    actor = api_token.created_by
    if user_id is None:
        if request.method == "GET":
            members = Membership.objects.for_org(api_token.organization).select_related("user").order_by("pk")
            return _list(request, members, filters=FILTER, field="user__email", resource=_resource)
        if request.method == "POST":
            body = _body(request)
            email = body.get("userName") or next((e.get("value") for e in body.get("emails") or []), "")
            if not email or "@" not in email:
                raise ScimError(400, "userName must be the person's email address.", "invalidValue")
            try:
                membership = services.scim_user_create(
                    org=api_token.organization,
                    actor=actor,
                    email=email,
                    name=_name(body) or "",
                    active=_bool(body.get("active", True)),
                )
            except ValidationError as e:
                raise ScimError(409, " ".join(e.messages), "uniqueness") from None
            return _response(_resource(request, membership), 201)
        raise ScimError(405, f"{request.method} is not supported here.")
    membership = _membership(api_token, user_id)
    if request.method == "GET":
        return _response(_resource(request, membership))
    if request.method == "DELETE":
        if membership.is_active:
            services.scim_user_deactivate(membership=membership, actor=actor)
        return HttpResponse(status=204)
    if request.method in ("PUT", "PATCH"):
        body = _body(request)
        if request.method == "PUT":
            name, active = _name(body), _bool(body.get("active", True))
        else:
            name, active = _patch(body)
        services.scim_user_update(membership=membership, actor=actor, name=name, active=active)
        membership.refresh_from_db()
        return _response(_resource(request, membership))
    raise ScimError(405, f"{request.method} is not supported here.")


# --- Groups -----------------------------------------------------------------------------------------

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
GROUP_FILTER = re.compile(r'^\s*(displayName)\s+eq\s+"([^"]*)"\s*$', re.I)
# Okta removes one member by a path filter: members[value eq "42"].
MEMBER_PATH = re.compile(r'^members\[value eq "([^"]+)"\]$', re.I)


def _group_resource(request: HttpRequest, group: ScimGroup) -> dict:
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.pk),
        "displayName": group.display_name,
        "members": [{"value": str(m.pk), "display": m.user.email} for m in group.members.select_related("user")],
        "meta": {
            "resourceType": "Group",
            "created": group.created_at.isoformat(),
            "location": request.build_absolute_uri(f"/scim/v2/Groups/{group.pk}"),
        },
    }


def _members(api_token, values) -> list[Membership]:
    if not isinstance(values, list):
        raise ScimError(400, 'members must be a list of {"value": id}.', "invalidValue")
    return [_member_or_400(api_token, v.get("value") if isinstance(v, dict) else v) for v in values]


def _member_or_400(api_token, member_id) -> Membership:
    try:
        return _membership(api_token, str(member_id))
    except ScimError:
        raise ScimError(400, f"No user {member_id} in this organization.", "invalidValue") from None


def _group_patch(api_token, body: dict) -> dict:
    """What a PatchOp does to a group (name, members added, removed or replaced), in Okta's and Entra ID's ways."""
    if PATCH_SCHEMA not in body.get("schemas", []):
        raise ScimError(400, f"A PATCH body names the schema {PATCH_SCHEMA}.", "invalidSyntax")
    change = {"display_name": None, "add": [], "remove": [], "replace": None}
    for operation in body.get("Operations") or []:
        op, path, value = str(operation.get("op", "")).lower(), operation.get("path") or "", operation.get("value")
        if path.lower() == "members" and op == "add":
            change["add"] += _members(api_token, value)
        elif path.lower() == "members" and op == "replace":
            change["replace"] = (change["replace"] or []) + _members(api_token, value)
        elif path.lower() == "members" and op == "remove":
            change["remove"] += _members(api_token, value or [])
        elif (match := MEMBER_PATH.match(path)) and op == "remove":
            change["remove"].append(_member_or_400(api_token, match.group(1)))
        elif op == "replace" and (path.lower() == "displayname" or (not path and isinstance(value, dict))):
            name = value if path else value.get("displayName")
            if name is not None:
                change["display_name"] = str(name)
        else:
            raise ScimError(
                400, f"Unsupported operation {operation.get('op')!r} on {path or 'the group'}.", "invalidPath"
            )
    return change


def _group_dispatch(request: HttpRequest, group_id: str | None) -> JsonResponse | HttpResponse:
    api_token = _authenticate(request)
    org, actor = api_token.organization, api_token.created_by
    groups = ScimGroup.objects.for_org(org).order_by("pk")
    if group_id is None:
        if request.method == "GET":
            return _list(request, groups, filters=GROUP_FILTER, field="display_name", resource=_group_resource)
        if request.method == "POST":
            body = _body(request)
            group = _save_group(
                org,
                actor,
                None,
                display_name=str(body.get("displayName") or ""),
                replace=_members(api_token, body.get("members") or []),
            )
            return _response(_group_resource(request, group), 201)
        raise ScimError(405, f"{request.method} is not supported here.")
    group = groups.filter(pk=int(group_id) if group_id.isdigit() else -1).first()
    if group is None:
        raise ScimError(404, f"No group {group_id} in this organization.")
    if request.method == "GET":
        return _response(_group_resource(request, group))
    if request.method == "DELETE":
        services.scim_group_delete(group=group, actor=actor)
        return HttpResponse(status=204)
    if request.method == "PUT":
        body = _body(request)
        group = _save_group(
            org,
            actor,
            group,
            display_name=str(body.get("displayName") or group.display_name),
            replace=_members(api_token, body.get("members") or []),
        )
        return _response(_group_resource(request, group))
    if request.method == "PATCH":
        group = _save_group(org, actor, group, **_group_patch(api_token, _body(request)))
        return HttpResponse(status=204)
    raise ScimError(405, f"{request.method} is not supported here.")


def _save_group(org, actor, group, **change) -> ScimGroup:
    try:
        return services.scim_group_save(org=org, actor=actor, group=group, **change)
    except ValidationError as e:
        raise ScimError(
            409 if e.code == "uniqueness" else 400, " ".join(e.messages), e.code or "invalidValue"
        ) from None


def _endpoint(dispatch):
    """A SCIM view: bearer-token authenticated (no CSRF, no session), every refusal a SCIM error body."""

    @csrf_exempt
    def view(request: HttpRequest, object_id: str | None = None) -> JsonResponse | HttpResponse:
        try:
            return dispatch(request, object_id)
        except ScimError as e:
            return _error(e)

    return view


users = _endpoint(_dispatch)
groups = _endpoint(_group_dispatch)

from __future__ import annotations

from contextlib import nullcontext

from django.contrib.auth.views import redirect_to_login
from django.db import connection, transaction
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.utils import timezone

from governance import tenancy
from governance.models import Membership, Organization
from governance.services import audit_log


class TenantMiddleware:
    """Resolves `/o/<org_slug>/...` into `request.org` and `request.membership`; strangers get 404.

    The slug is taken out of the view's kwargs here so that views never look an organization up
    themselves: `request.org` is the only way in. It also sets the request's tenant scope (governance.tenancy):
    the organization's rows under /o/<slug>/, the user's own memberships elsewhere, nothing for a stranger.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.org = None
        request.membership = None
        try:
            with tenancy.scope(), transaction.atomic(savepoint=False) if _page_read(request) else nullcontext():
                return self.get_response(request)
        finally:
            timezone.deactivate()

    def process_view(self, request, view_func, view_args, view_kwargs):
        slug = view_kwargs.pop("org_slug", None)
        if request.user.is_authenticated:
            tenancy.switch(user=request.user.pk)
        if slug is None:
            return None
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = (
            Membership.objects.select_related("organization", "user")
            .filter(organization__slug=slug, user=request.user, is_active=True)
            .first()
        )
        if membership is None:
            org = Organization.objects.filter(slug=slug).first()
            if org is not None:
                # Someone probing another organization's URLs is worth its admins' attention.
                with tenancy.scope(organization=org.pk):
                    audit_log(
                        org=org,
                        actor=request.user,
                        verb="security.access_denied",
                        after={"path": request.path, "method": request.method},
                    )
            raise Http404("No such organization.")
        request.org = membership.organization
        request.membership = membership
        tenancy.switch(organization=request.org.pk, user=request.user.pk)
        # Pages show times in the organization's zone; the database stays in UTC.
        timezone.activate(request.org.tzinfo)
        return None


def _page_read(request) -> bool:
    """Whether the request is an organization's page being read (GET or HEAD of /o/<slug>/...) on PostgreSQL.

    Under row-level security a statement outside a transaction costs BEGIN, set_config and COMMIT round trips
    (governance.postgresql), and these pages run a dozen or more: they share one transaction instead. Writes keep
    the transactions their services open; Django has turned any exception into a response before it gets back to
    the middleware, so what a request wrote before failing (a security event) is committed as it was without it.
    Other requests (the API, the login page, static files) may need no database at all and keep autocommit.
    """
    if request.method not in ("GET", "HEAD") or connection.vendor != "postgresql":
        return False
    try:
        return "org_slug" in resolve(request.path_info).kwargs
    except Resolver404:
        return False


class NulMiddleware:
    """Refuses a URL whose path or query holds a NUL character (`?q=%00`, `/api/v1/kpis/a%00b`): PostgreSQL text
    cannot hold one, so any lookup with it would be a server error. The API answers 422 in its error shape,
    pages a plain 400."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = "path" if "\x00" in request.path else None
        for name, values in request.GET.lists():
            if where is None and any("\x00" in text for text in (name, *values)):
                where = name.replace("\x00", "\\x00")
        if where is None:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"errors": [{"path": where, "message": "must not contain a NUL character"}]}, status=422
            )
        return HttpResponseBadRequest("The address holds a NUL character.", content_type="text/plain")

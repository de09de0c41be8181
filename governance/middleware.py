from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from functools import partial

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import DEFAULT_DB_ALIAS, OperationalError, connection, connections, router, transaction
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from psycopg import errors

from governance import tenancy
from governance.models import Membership, Organization
from governance.services.audit import audit_log

logger = logging.getLogger(__name__)

# What a request id may look like: a UUID, a proxy's hex or base64 id, "Root=1-..."; at most the 64 characters an
# audit event keeps, nothing that could break a log line.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,63}")


def request_id_guard(get_response):
    """Drops a client's request id that is not well formed, so django-guid generates one instead.

    The id is written into every audit event and log line of the request: one too long to store made each audited
    request fail (and since only a probe of another organization's id is audited, the failure told which ids
    exist there). Runs before django-guid's middleware, which takes the header as it finds it."""
    header = "HTTP_" + settings.DJANGO_GUID["GUID_HEADER_NAME"].upper().replace("-", "_")

    def middleware(request):
        given = request.META.get(header)
        if given is not None and not REQUEST_ID.fullmatch(given):
            del request.META[header]
        return get_response(request)

    return middleware


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
        # A page's one transaction is on the database it reads from: a replica's, if pages read one (config/replica.py),
        # so that a transaction the page opens on the primary is told apart from it.
        page = transaction.atomic(using=_read_alias(), savepoint=False) if _page_read(request) else nullcontext()
        try:
            with tenancy.web_request(), page:
                return self.get_response(request)
        finally:
            timezone.deactivate()

    def process_exception(self, request, exception):
        """A statement stopped by the web statement timeout (governance.tenancy) is the request taking too long,
        not a fault: 503, in the API's error shape under /api/, else a page; both invite a retry."""
        if not (isinstance(exception, OperationalError) and isinstance(exception.__cause__, errors.QueryCanceled)):
            return None
        logger.warning("Statement timeout on %s %s", request.method, request.path)
        for alias in {DEFAULT_DB_ALIAS, _read_alias()}:
            if connections[alias].in_atomic_block:
                transaction.set_rollback(
                    True, using=alias
                )  # the transaction is aborted: end it without another statement
        message = "The request took too long and was stopped. Try again, or narrow it down."
        if request.path.startswith("/api/"):
            response = JsonResponse({"errors": [{"path": "", "message": message}]}, status=503)
        else:
            # No request context: its processors would query the aborted transaction.
            response = HttpResponse(render_to_string("503.html", {"message": message}), status=503)
        response["Retry-After"] = "30"
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        slug = view_kwargs.pop("org_slug", None)
        if request.user.is_authenticated:
            tenancy.switch(user=request.user.pk)
            # The organization switcher lists them on every page, and an organization's page picks its own from
            # them: one query for both, made only when either needs it.
            request.memberships = SimpleLazyObject(partial(_memberships, request.user))
        if slug is None:
            return None
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = next((m for m in request.memberships if m.organization.slug == slug), None)
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


def _memberships(user) -> list[Membership]:
    """The user's active memberships, by organization name, with their organizations."""
    memberships = list(
        Membership.objects.filter(user=user, is_active=True)
        .select_related("organization")
        .order_by("organization__name")
    )
    for membership in memberships:
        membership.user = user
    return memberships


def _read_alias() -> str:
    return router.db_for_read(Membership)


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

"""Page reads from a PostgreSQL replica when DATABASE_REPLICA_URL is set (the `replica` database alias).

Only a page read goes there: a GET or HEAD of a browser page, outside any transaction.atomic of its own. Writes, a
transaction's reads (which may decide a write), the API (its clients carry no cookie to stick with), Celery tasks
and commands stay on the primary. A replica lags behind the primary, so a browser that has just written (any other
method) reads its next pages from the primary for REPLICA_STICKY_SECONDS: a person sees their own change at once.

Raw SQL on `django.db.connection` is the primary's: the router chooses for querysets only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse

REPLICA = "replica"
STICKY_COOKIE = "steerco_primary"
_page_read: ContextVar[bool] = ContextVar("steerco_page_read", default=False)


@contextmanager
def page_read() -> Iterator[None]:
    """The block reads from the replica, if there is one."""
    reset = _page_read.set(True)
    try:
        yield
    finally:
        _page_read.reset(reset)


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str:
        if _page_read.get() and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return REPLICA
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints) -> str:
        # Explicitly the primary: left to Django, a row read from the replica would be saved back to where it came from.
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # one database, whichever copy a row was read from

    def allow_migrate(self, db, app_label, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS  # the replica follows the primary's schema by replication


def replica_reads(get_response):
    """Middleware: marks page reads, and makes a browser that writes stick to the primary for a while."""
    if REPLICA not in settings.DATABASES:
        raise MiddlewareNotUsed  # no replica: every read is the primary's, and no cookie is needed

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            response = get_response(request)
            response.set_cookie(
                STICKY_COOKIE,
                "1",
                max_age=settings.REPLICA_STICKY_SECONDS,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
            return response
        if STICKY_COOKIE in request.COOKIES or request.path_info.startswith("/api/"):
            return get_response(request)
        with page_read():
            return get_response(request)

    return middleware

"""Whose rows a unit of work may touch: the second wall behind the tenant-scoped querysets.

On PostgreSQL every tenant table has row-level security (FORCE ROW LEVEL SECURITY, policies in
governance/migrations/0006_row_level_security.py) keyed on settings that hold for one transaction only. The
request middleware and every Celery task, command and credential check declare their scope with `scope()`;
the database backend (governance.postgresql) writes it into each transaction before its first statement.
Without a scope nothing tenant-owned is visible and nothing can be written.

- organization: that organization's rows (a page under /o/<slug>/, an API token's organization, one
  organization's task);
- user: that user's own memberships (which organizations they may enter);
- token: the one API token or invitation whose digest a caller presents, before its organization is known;
- system: every organization's rows, for the beat's sweeps, which claim work across organizations by design,
  and for manage.py commands (operators' tools). A test pins the places that may ask for it
  (tests/governance/test_rls.py). The database grants it only to members of governance.rls.SYSTEM_ROLE: the
  workers' role and the owner, not the web's, so a statement injected into a web request cannot switch it on.

A scope also carries the unit of work's statement timeout, written in the same round trip: a web request's
(`WEB_STATEMENT_TIMEOUT`), so that no tenant's request holds a worker for long. Tasks and commands keep the
database role's own (none by default): a sweep over every organization or a migration may rightly take longer,
and Celery's time limits bound them. Nested scopes inherit the timeout of the one they replace.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from governance.rls import SYSTEM_ROLE, may_enter_system_scope


@dataclass(frozen=True)
class Scope:
    organization: int | None = None
    user: int | None = None
    token: str = ""
    system: bool = False
    statement_timeout: str = ""  # a PostgreSQL duration ("10000ms"); empty keeps the session's own

    def settings(self) -> list[tuple[str, str]]:
        return [
            ("steerco.organization", "" if self.organization is None else str(self.organization)),
            ("steerco.user", "" if self.user is None else str(self.user)),
            ("steerco.token", self.token),
            ("steerco.system", "on" if self.system else ""),
            ("statement_timeout", self.statement_timeout),
        ]


NOTHING = Scope()
_current: ContextVar[Scope] = ContextVar("steerco_scope", default=NOTHING)


def current() -> Scope:
    return _current.get()


@contextmanager
def scope(*, organization: int | None = None, user: int | None = None, token: str = "", system: bool = False):
    """Runs the block in this scope only (it replaces the outer one, it does not add to it); the statement timeout
    is the outer one's."""
    timeout = _current.get().statement_timeout
    reset = _current.set(
        Scope(organization=organization, user=user, token=token, system=system, statement_timeout=timeout)
    )
    try:
        yield
    finally:
        _current.reset(reset)


@contextmanager
def web_request():
    """A web request's unit of work: no rows yet (the middleware switches to the caller's), and the statement
    timeout of `WEB_STATEMENT_TIMEOUT`."""
    milliseconds = int(settings.WEB_STATEMENT_TIMEOUT.total_seconds() * 1000)
    reset = _current.set(Scope(statement_timeout=f"{milliseconds}ms" if milliseconds else ""))
    try:
        yield
    finally:
        _current.reset(reset)


def switch(**changes) -> None:
    """Changes the scope for the rest of the enclosing `scope()` block: the middleware, the API's token check and
    an invitation link learn the organization only once the request is under way."""
    _current.set(replace(_current.get(), **changes))


def for_sweep(org_id: int | None):
    """A sweep's scope: one organization's when it was queued for one, every organization's for the beat's."""
    return scope(organization=org_id) if org_id is not None else scope(system=True)


def refuse_privileged_role(*, sweeps: bool) -> None:
    """Web and worker processes in production must be subject to row-level security: a superuser or a role with
    BYPASSRLS is not, so they refuse to start as one (migrations run as the owner, through manage.py). Workers
    (`sweeps`) need the system scope and web processes must not have it, so each refuses the other's role."""
    if not settings.REFUSE_PRIVILEGED_DATABASE_ROLE:
        return
    # Web processes read pages from the replica too, if there is one (config/replica.py); workers use the primary.
    for alias in [DEFAULT_DB_ALIAS] if sweeps else list(settings.DATABASES):
        if connections[alias].vendor == "postgresql":
            _refuse_privileged_role(connections[alias], sweeps=sweeps)


def _refuse_privileged_role(connection, *, sweeps: bool) -> None:
    where = "" if connection.alias == DEFAULT_DB_ALIAS else f" of the {connection.alias} (DATABASE_REPLICA_URL)"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            role, superuser, bypass = cursor.fetchone()
            system = may_enter_system_scope(cursor)
    finally:
        connection.close()  # forked workers must not share this socket
    if superuser or bypass:
        raise ImproperlyConfigured(
            f"The database role {role!r}{where} is a superuser or bypasses row-level security. Connect web and worker "
            "processes as the runtime roles (manage.py runtime_role creates them; see the README), and run "
            "migrations as the owner."
        )
    if system != sweeps:
        raise ImproperlyConfigured(
            f"The database role {role!r}{where} is a member of {SYSTEM_ROLE}: web processes connect as the web role, "
            "which may not enter the system scope (see the README)."
            if system
            else f"The database role {role!r} is no member of {SYSTEM_ROLE}, so the sweeps would see no "
            "organization: workers connect as the workers' role (manage.py runtime_role NAME --sweeps)."
        )

"""PostgreSQL with the tenant scope (governance.tenancy) written into every transaction before its first statement.

The scope lives in transaction-local settings (set_config(..., true)), so a connection reused by the next
request or task cannot carry it over. A statement run outside transaction.atomic is given a transaction of its
own for the same reason.
"""

from contextlib import contextmanager

import psycopg
from django.db import transaction
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

from governance import tenancy

# An empty value leaves a setting as the session has it (a statement timeout of "" would be refused).
APPLY = "SELECT " + ", ".join(
    f"set_config('{name}', coalesce(nullif(%s, ''), current_setting('{name}')), true)"
    if name == "statement_timeout"
    else f"set_config('{name}', %s, true)"
    for name, _ in tenancy.NOTHING.settings()
)


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scope_applied = None  # the scope the open transaction holds, None when it may hold none
        self.execute_wrappers.append(self._in_scope)

    @contextmanager
    def psycopg_cursor(self):
        """psycopg's own cursor (binary results, COPY), whose statements run in the scope as every other does."""
        self.ensure_connection()
        with self._scoped(), psycopg.Cursor(self.connection) as cursor:
            yield cursor

    def bind(self, sql: str, params) -> str:
        """The statement with its parameters bound into its text, as Django's own cursor sends it (for psycopg's
        binary cursor, whose server-side parameters a SELECT DISTINCT's ORDER BY could not match, see read_rows)."""
        self.ensure_connection()
        return psycopg.ClientCursor(self.connection).mogrify(sql, params)

    def _in_scope(self, execute, sql, params, many, context):
        with self._scoped():
            return execute(sql, params, many, context)

    @contextmanager
    def _scoped(self):
        scope = tenancy.current()
        status = self.connection.info.transaction_status
        if status == TransactionStatus.IDLE and self.get_autocommit():
            if scope == tenancy.NOTHING:
                # A fresh transaction holds no scope: nothing to write, and statements that cannot run in a
                # transaction block (CREATE DATABASE, VACUUM) keep working outside any scope.
                yield
                return
            with transaction.atomic(using=self.alias):
                self._apply(scope)
                yield
            return
        if status == TransactionStatus.IDLE or (status == TransactionStatus.INTRANS and self.scope_applied != scope):
            self._apply(scope)
        yield

    def _apply(self, scope) -> None:
        # A cursor of its own: the statement's may be a server-side one.
        with self.connection.cursor() as cursor:
            cursor.execute(APPLY, [value for _, value in scope.settings()])
        self.scope_applied = scope

    # Whatever ends a transaction, or rolls back to a savepoint (which undoes a set_config made after it),
    # leaves the connection holding no known scope.
    def _commit(self):
        result = super()._commit()
        self.scope_applied = None
        return result

    def _rollback(self):
        result = super()._rollback()
        self.scope_applied = None
        return result

    def _savepoint_rollback(self, sid):
        result = super()._savepoint_rollback(sid)
        self.scope_applied = None
        return result

    def _set_autocommit(self, autocommit):
        result = super()._set_autocommit(autocommit)
        self.scope_applied = None
        return result

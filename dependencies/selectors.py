"""Graph reads: neighbours and transitive closures come from recursive SQL, not from walking the ORM."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from dependencies.models import Dependency
from governance.manifest.graph import find_path
from governance.models import Organization

MAX_DEPTH = 100  # the graph is acyclic; this only bounds a walk if a cycle ever slipped in


def edges(*, org: Organization) -> QuerySet[Dependency]:
    return Dependency.objects.for_org(org).select_related("upstream__team", "downstream__team")


def closure(*, org: Organization, kpi_ids: list[int], direction: str) -> dict[int, int]:
    """Every KPI reachable from `kpi_ids` going `downstream` (what depends on them) or `upstream` (what they
    depend on), with its shortest distance."""
    if not kpi_ids:
        return {}
    near, far = ("upstream_id", "downstream_id") if direction == "downstream" else ("downstream_id", "upstream_id")
    table = Dependency._meta.db_table
    marks = ", ".join(["%s"] * len(kpi_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE walk(id, depth) AS (
                SELECT {far}, 1 FROM {table} WHERE organization_id = %s AND {near} IN ({marks})
                UNION
                SELECT d.{far}, walk.depth + 1 FROM {table} d JOIN walk ON d.{near} = walk.id
                WHERE d.organization_id = %s AND walk.depth < %s
            )
            SELECT id, min(depth) FROM walk GROUP BY id
            """,
            [org.pk, *kpi_ids, org.pk, MAX_DEPTH],
        )
        return dict(cursor.fetchall())


def path_between(*, org: Organization, start: int, goal: int) -> list[int] | None:
    """The shortest chain of edges from `start` down to `goal`, as KPI ids, or None.

    The SQL walks nodes, not paths (UNION keeps each KPI once), so a graph of many diamonds costs its edges, not
    the paths through them; the shortest chain is then read off those edges breadth first."""
    table = Dependency._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE reach(id) AS (
                SELECT CAST(%s AS BIGINT)
                UNION
                SELECT d.downstream_id FROM {table} d JOIN reach ON d.upstream_id = reach.id
                WHERE d.organization_id = %s
            )
            SELECT d.upstream_id, d.downstream_id FROM {table} d
            WHERE d.organization_id = %s AND d.upstream_id IN (SELECT id FROM reach)
            ORDER BY d.upstream_id, d.downstream_id
            """,
            [start, org.pk, org.pk],
        )
        below: dict[int, list[int]] = {}
        for upstream, downstream in cursor.fetchall():
            below.setdefault(upstream, []).append(downstream)
    return find_path(start, goal, lambda node: below.get(node, ()))

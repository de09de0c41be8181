"""The team dependency matrix (issue "Cross-team dependency graph", item 3): teams x teams, the edges from team A's
KPIs (upstream, rows) to team B's (downstream, columns), how many of those upstreams are red or stale, and the open
dependency reviews they caused downstream. It is escalations', not dependencies', because it reads the reviews."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from dependencies import selectors as dependency_selectors
from escalations.models import DependencyReviewSignal
from governance.models import Organization, Team
from scorecards.models import Status

MATRIX_RED = (Status.AT_RISK, Status.OFF_TRACK)
Cells = dict[tuple[int, int], dict]  # (upstream team id, downstream team id) -> the cell's counts


def _edge_cells(org: Organization) -> Cells:
    counts = (
        dependency_selectors.edges(org=org)
        .filter(upstream__archived_at=None, downstream__archived_at=None)
        .values("upstream__team_id", "downstream__team_id")
        .annotate(
            n=Count("pk"),
            red=Count("pk", filter=Q(upstream__status__in=MATRIX_RED)),
            stale=Count("pk", filter=Q(upstream__status=Status.STALE)),
        )
        .order_by()
    )
    return {
        (row["upstream__team_id"], row["downstream__team_id"]): {
            "edges": row["n"],
            "red": row["red"],
            "stale": row["stale"],
            "reviews": 0,
        }
        for row in counts
    }


def _open_signals(org: Organization) -> QuerySet[DependencyReviewSignal]:
    # A review is open until answered; it belongs to the cell of each upstream team whose signal it lists.
    return DependencyReviewSignal.objects.for_org(org).filter(review__answered_at=None)


def _add_reviews(cells: Cells, open_signals: QuerySet[DependencyReviewSignal]) -> None:
    reviews = (
        open_signals.values("upstream__team_id", "kpi__team_id").annotate(n=Count("review", distinct=True)).order_by()
    )
    for row in reviews:
        key = (row["upstream__team_id"], row["kpi__team_id"])
        cells.setdefault(key, {"edges": 0, "red": 0, "stale": 0, "reviews": 0})["reviews"] = row["n"]


def _rows(org: Organization, teams: list[Team], cells: Cells) -> list[dict]:
    graph_url = reverse("dependencies:dependency_graph", kwargs={"org_slug": org.slug})
    rows = []
    for up in teams:
        row_cells = []
        for down in teams:
            cell = cells.get((up.pk, down.pk))
            if cell:
                cell["url"] = f"{graph_url}?from_team={up.pk}&to_team={down.pk}"
            row_cells.append((down, cell))
        total = [c for _, c in row_cells if c]
        rows.append({"team": up, "cells": row_cells, "edges": sum(c["edges"] for c in total)})
    return rows


def team_matrix(*, org: Organization) -> dict:
    """What the matrix page renders: the teams with an edge or a review, a row per upstream team, the totals."""
    cells = _edge_cells(org)
    open_signals = _open_signals(org)
    _add_reviews(cells, open_signals)
    involved = {team for pair in cells for team in pair}
    teams = [t for t in Team.objects.for_org(org).order_by("name") if t.pk in involved]
    return {
        "teams": teams,
        "rows": _rows(org, teams, cells),
        "column_totals": [sum(cells.get((up.pk, down.pk), {}).get("edges", 0) for up in teams) for down in teams],
        "edge_total": sum(c["edges"] for c in cells.values()),
        "red_total": sum(c["red"] for c in cells.values()),
        "stale_total": sum(c["stale"] for c in cells.values()),
        # Counted once each, though a review with signals from two teams shows in two cells.
        "review_total": open_signals.values("review_id").distinct().count(),
    }

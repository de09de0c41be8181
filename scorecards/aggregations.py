"""The aggregations a KPI may be judged by: the one list of their names. The model's choices (and with them the
KPI form), the manifest's validation, the evaluator and its reasons all read it; adding one is one line here
(docs/extending-data.md, "Adding an aggregation"). Imports nothing of scorecards, so that the models can."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Aggregation:
    label: str  # in the KPI form and on its page: "Average"
    noun: str  # in a reason, after the window: "7-day average"
    fn: Callable[[Sequence[float]], float]  # over the window's values, oldest first (never empty)


LAST = "last"
AGGREGATIONS: dict[str, Aggregation] = {
    LAST: Aggregation("Last value", "last", lambda values: values[-1]),
    "sum": Aggregation("Sum", "sum", sum),
    "avg": Aggregation("Average", "average", lambda values: sum(values) / len(values)),
    "min": Aggregation("Minimum", "min", min),
    "max": Aggregation("Maximum", "max", max),
}


def aggregation_choices() -> list[tuple[str, str]]:
    """Kpi.aggregate_fn's choices: a callable, so that a new aggregation needs no migration."""
    return [(name, aggregation.label) for name, aggregation in AGGREGATIONS.items()]

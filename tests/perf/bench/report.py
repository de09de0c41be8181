"""One report for `make bench`: each benchmark records its figures here as it prints them; `python -m
tests.perf.bench.report` then writes var/bench/report.json and var/bench/report.md (a table of each figure, its goal,
and whether this run met it). `make bench` starts from an empty record, so the report is one run's figures."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

OUT = Path(__file__).resolve().parents[3] / "var" / "bench"
FIGURES = OUT / "figures.jsonl"


def record(bench: str, figure: str, value: float, unit: str, *, goal: str = "", met: bool | None = None) -> None:
    """Print one figure and append it to this run's record. `met` is None where the figure has no goal."""
    verdict = "" if met is None else ("  [goal met]" if met else "  [goal NOT met]")
    print(f"  {figure}: {value:,.{decimals(value)}f} {unit}" + (f" (goal {goal})" if goal else "") + verdict)
    OUT.mkdir(parents=True, exist_ok=True)
    line = {"bench": bench, "figure": figure, "value": value, "unit": unit, "goal": goal, "met": met}
    with FIGURES.open("a") as f:
        f.write(json.dumps(line) + "\n")


def decimals(value: float) -> int:
    return 0 if abs(value) >= 100 or float(value).is_integer() else 1 if abs(value) >= 10 else 2


def main() -> None:
    rows = [json.loads(line) for line in FIGURES.read_text().splitlines()] if FIGURES.exists() else []
    if not rows:
        sys.exit("no figures recorded: run `make bench`")
    report = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "figures": rows}
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Steerco benchmarks ({report['generated_at']})",
        "",
        "Figures from one run on one machine; compare ratios, not absolute times, across runs.",
        "",
        "| Benchmark | Figure | Value | Goal | Met |",
        "|---|---|---:|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        value = f"{row['value']:,.{decimals(row['value'])}f} {row['unit']}"
        lines.append(f"| {row['bench']} | {row['figure']} | {value} | {row['goal']} | {met} |")
    (OUT / "report.md").write_text("\n".join(lines) + "\n")
    missed = sum(row["met"] is False for row in rows)
    print(f"\nbenchmark report: {OUT / 'report.md'} and report.json ({len(rows)} figures, {missed} goals not met)")


if __name__ == "__main__":
    main()

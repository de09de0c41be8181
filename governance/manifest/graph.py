"""Following references: the shortest path, a cycle, parents before their children."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from governance.manifest.context import Context


def find_path(start: str, goal: str, following: Callable[[str], Iterable[str]]) -> list[str] | None:
    """The shortest path start -> ... -> goal along `following`, or None."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in following(node):
            if nxt == goal:
                return [*paths[node], goal]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    return None


def find_cycle(start: str, following: Callable[[str], Iterable[str]]) -> list[str] | None:
    """A path start -> ... -> start along `following`, or None."""
    return find_path(start, start, following)


def parents_first(desired: dict[str, dict], parent_field: str = "parent") -> list[str]:
    """Keys ordered so that a parent named in the document comes before its children (no cycles here)."""
    ordered: list[str] = []
    done: set[str] = set()

    def visit(key: str, depth: int = 0) -> None:
        if key in done or depth > len(desired):
            return
        parent = desired[key].get(parent_field)
        if parent in desired:
            visit(parent, depth + 1)
        done.add(key)
        ordered.append(key)

    for key in desired:
        visit(key)
    return ordered


def report_parent_cycles(ctx: Context, desired: dict[str, dict], paths: dict[str, str], parents: dict) -> None:
    """One error per cycle of `parent` links, on the first entry of the document that is part of it."""
    reported: set[frozenset] = set()
    for key in desired:
        cycle = find_cycle(key, lambda k: [parents[k]] if parents.get(k) else [])
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            ctx.errors.add(f"{paths[key]}.parent", f"cycle {' -> '.join(cycle)}")

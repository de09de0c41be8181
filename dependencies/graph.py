"""The dependency graph as a picture: pure layout and SVG, plain values in, escaped markup out. No ORM.

Layout (a small Sugiyama): upstream on the left, downstream on the right.
- Layers: longest path from the sources, then every source is pulled next to its nearest consumer, so a KPI
  that feeds only a deep one does not drag a long edge across the picture.
- Teams are horizontal bands; inside a band each layer is a column of KPIs stacked top-down.
- An edge spanning several layers gets a dummy waypoint in each layer in between (in the downstream team's
  band), so it runs through a free slot of the column and never crosses a KPI box.
- The order inside each (band, layer) cell comes from a few barycentre sweeps; ties keep the previous order,
  which starts from (team, name, id), so the same graph always gives the same picture.
- Kind labels sit in the gaps between columns (never on a box) and are placed only where they overlap no other
  label; an edge whose label finds no room keeps its kind in its line style, its tooltip and the table.

The CSP forbids inline styles: every element is styled by class from static/css/graph.css.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from scorecards.charts.svg import coord

__all__ = ["Edge", "Layout", "Node", "graph_svg", "layout"]

STATUS_LABELS = {
    "on_track": "On track",
    "at_risk": "At risk",
    "off_track": "Off track",
    "stale": "Stale",
    "no_data": "No data",
}
RED = frozenset({"at_risk", "off_track"})
KIND_SHORT = {
    "drives_demand": "demand",
    "consumes_capacity": "capacity",
    "blocks": "blocks",
    "informs": "informs",
    "computed_from": "computed from",
    "suggested": "suggested",  # found in the data, not confirmed: drawn dashed
}

NODE_W, NODE_H = 172.0, 40.0
ROW_PITCH = NODE_H + 14  # a KPI's slot in its column
DUMMY_PITCH = 14.0  # a long edge's slot where it passes a column
COL_GAP = 84.0  # room for the curves and their kind labels
BAND_HEAD = 22.0  # the team's name above its band
BAND_PAD = 10.0
MARGIN = 12.0
ARROW = 7.0  # the arrow head's length; paths stop short of the box by this much
SWEEPS = 4
LABEL_EVERY = 4  # columns between repeats of a team's name

_CHAR_PX = 6.9  # average advance of the 11.5px semibold node names
_LABEL_CHAR_PX = 5.8  # the 10px edge labels
_LABEL_H = 11.0
_BAND_CHAR_PX = 7.2  # the 12px bold team names


@dataclass(frozen=True)
class Node:
    id: int
    name: str
    key: str
    team: str
    status: str
    href: str
    focus: bool = False  # the KPI a neighbourhood is drawn around


@dataclass(frozen=True)
class Edge:
    """`downstream` depends on `upstream`."""

    upstream: int
    downstream: int
    kind: str
    kind_label: str = ""
    lag: str = ""


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


@dataclass(frozen=True)
class BandBox:
    team: str
    y: float
    h: float


@dataclass
class Layout:
    width: float
    height: float
    layers: dict[int, int]  # node id -> layer (column)
    nodes: dict[int, Box]
    bands: list[BandBox]
    paths: list[str]  # one per edge, in the order of the edges given
    labels: list[tuple[Box, str] | None] = field(default_factory=list)  # per edge, None where it found no room


# --------------------------------------------------------------------------------------------------
# Layout


def _layers(order: list[int], ups: dict[int, list[int]], downs: dict[int, list[int]]) -> tuple[dict[int, int], set]:
    """Longest-path layers, sources pulled right; also the edges that had to be ignored (only if a cycle
    slipped into the data: the picture must still render)."""
    rank = {n: i for i, n in enumerate(order)}
    pending = {n: len(ups[n]) for n in order}
    ready = [(rank[n], n) for n in order if pending[n] == 0]
    heapq.heapify(ready)
    done: dict[int, int] = {}
    back: set[tuple[int, int]] = set()
    while len(done) < len(order):
        if not ready:  # a cycle: break it at the first remaining node
            n = min((n for n in order if n not in done), key=rank.__getitem__)
            back.update((u, n) for u in ups[n] if u not in done)
            heapq.heappush(ready, (rank[n], n))
        _, n = heapq.heappop(ready)
        if n in done:
            continue
        done[n] = max((done[u] + 1 for u in ups[n] if u in done), default=0)
        for d in downs[n]:
            if d not in done:
                pending[d] -= 1
                if pending[d] == 0:
                    heapq.heappush(ready, (rank[d], d))
    for n in order:
        forward = [d for d in downs[n] if (n, d) not in back]
        if not any((u, n) not in back for u in ups[n]) and forward:
            done[n] = min(done[d] for d in forward) - 1
    return done, back


def layout(nodes: Sequence[Node], edges: Sequence[Edge]) -> Layout:
    """Positions of every box, band, path and label. Deterministic: the same input gives the same picture,
    whatever order the nodes and edges come in."""
    by_id = {n.id: n for n in nodes}
    edges = [e for e in edges if e.upstream in by_id and e.downstream in by_id and e.upstream != e.downstream]
    order = [n.id for n in sorted(nodes, key=lambda n: (n.team.casefold(), n.name.casefold(), n.key, n.id))]
    rank = {n: i for i, n in enumerate(order)}
    # Work in a fixed edge order; paths and labels are handed back in the caller's order.
    perm = sorted(range(len(edges)), key=lambda i: (rank[edges[i].upstream], rank[edges[i].downstream]))
    edges = [edges[i] for i in perm]
    ups: dict[int, list[int]] = {n: [] for n in order}
    downs: dict[int, list[int]] = {n: [] for n in order}
    for e in edges:
        ups[e.downstream].append(e.upstream)
        downs[e.upstream].append(e.downstream)
    layer, back = _layers(order, ups, downs)
    teams = sorted({n.team for n in nodes}, key=lambda t: (t.casefold(), t))
    band_of = {n.id: teams.index(n.team) for n in nodes}
    max_layer = max(layer.values(), default=0)

    grid = _Grid.build(order, edges, layer, back, band_of)
    band_h = [grid.band_height(b, max_layer) for b in range(len(teams))]
    grid.band_y = [MARGIN + sum(band_h[:b]) for b in range(len(teams))]
    grid.sweep(max_layer)

    boxes = {n: Box(_x_left(layer[n]), grid.top[("n", n)], NODE_W, NODE_H) for n in order}
    port_out, port_in = _ports(edges, grid, boxes)
    paths: list[str] = []
    labels: list[tuple[Box, str] | None] = []
    width = MARGIN * 2 + (max_layer + 1) * NODE_W + max_layer * COL_GAP
    # Edge labels keep off the team names.
    placed = [box for b, team in enumerate(teams) for _, box in _band_labels(team, grid.band_y[b], width)]
    for i, (e, chain) in enumerate(zip(edges, grid.chains, strict=True)):
        u, v = boxes[e.upstream], boxes[e.downstream]
        points = [(u.x + u.w, port_out[i])]
        for item in chain[1:-1]:
            points += [(_x_left(item[2]), grid.mid(item)), (_x_left(item[2]) + NODE_W, grid.mid(item))]
        points.append((v.x - ARROW, port_in[i]))
        d, gaps = _path(points)
        paths.append(d)
        labels.append(_place_label(KIND_SHORT.get(e.kind, e.kind), gaps, placed))

    height = MARGIN * 2 + sum(band_h)
    bands = [BandBox(team, grid.band_y[b], band_h[b]) for b, team in enumerate(teams)]
    in_order_paths, in_order_labels = [""] * len(perm), [None] * len(perm)
    for j, i in enumerate(perm):
        in_order_paths[i], in_order_labels[i] = paths[j], labels[j]
    return Layout(width, height, layer, boxes, bands, in_order_paths, in_order_labels)


def _pitch(item: tuple) -> float:
    return ROW_PITCH if item[0] == "n" else DUMMY_PITCH


def _x_left(lay: int) -> float:
    return MARGIN + lay * (NODE_W + COL_GAP)


@dataclass
class _Grid:
    """The items of each (band, layer) cell, top-down: KPIs ("n", id) and waypoints ("d", edge index, layer).
    Each edge is a chain of items; `top` is where each item sits once placed."""

    cells: dict[tuple[int, int], list[tuple]] = field(default_factory=lambda: defaultdict(list))
    chains: list[list[tuple]] = field(default_factory=list)
    preds: dict[tuple, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    succs: dict[tuple, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    band_y: list[float] = field(default_factory=list)
    top: dict[tuple, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls, order: list[int], edges: list[Edge], layer: dict[int, int], back: set, band_of: dict[int, int]
    ) -> _Grid:
        grid = cls()
        for n in order:
            grid.cells[(band_of[n], layer[n])].append(("n", n))
        for i, e in enumerate(edges):
            u, v = e.upstream, e.downstream
            chain: list[tuple] = [("n", u)]
            if (u, v) not in back:
                for lay in range(layer[u] + 1, layer[v]):
                    item = ("d", i, lay)
                    grid.cells[(band_of[v], lay)].append(item)
                    chain.append(item)
            chain.append(("n", v))
            grid.chains.append(chain)
        for i, chain in enumerate(grid.chains):
            if (edges[i].upstream, edges[i].downstream) in back:
                continue
            for a, b in zip(chain, chain[1:], strict=False):
                grid.succs[a].append(b)
                grid.preds[b].append(a)
        return grid

    def band_height(self, band: int, max_layer: int) -> float:
        """Room for the band's fullest column."""
        fullest = max(ROW_PITCH, *(sum(map(_pitch, self.cells[(band, lay)])) for lay in range(max_layer + 1)))
        return BAND_HEAD + 2 * BAND_PAD + fullest - (ROW_PITCH - NODE_H)

    def place(self, cell: tuple[int, int]) -> None:
        y = self.band_y[cell[0]] + BAND_HEAD + BAND_PAD
        for item in self.cells[cell]:
            self.top[item] = y
            y += _pitch(item)

    def mid(self, item: tuple) -> float:
        return self.top[item] + (NODE_H if item[0] == "n" else DUMMY_PITCH) / 2

    def sweep(self, max_layer: int) -> None:
        """Places every cell, then reorders each by the barycentre of its neighbours, rightwards then leftwards."""
        for cell in self.cells:
            self.place(cell)
        by_layer: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for cell in sorted(self.cells):
            by_layer[cell[1]].append(cell)
        for _ in range(SWEEPS):
            for lays, near in ((range(1, max_layer + 1), self.preds), (range(max_layer - 1, -1, -1), self.succs)):
                for lay in lays:
                    for cell in by_layer[lay]:
                        items = self.cells[cell]
                        keys = {
                            item: (
                                sum(self.mid(p) for p in near[item]) / len(near[item])
                                if near[item]
                                else self.mid(item),
                                i,
                            )
                            for i, item in enumerate(items)
                        }
                        items.sort(key=keys.__getitem__)
                        self.place(cell)


def _ports(edges: list[Edge], grid: _Grid, boxes: dict[int, Box]) -> tuple[dict[int, float], dict[int, float]]:
    """Where each edge leaves its source and reaches its target. A box's outgoing edges leave from points spread
    down its right side in the order of where they go, incoming ones arrive spread down the left side, so fans
    do not start on one pixel."""
    outs: dict[int, list[int]] = defaultdict(list)
    ins: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(edges):
        outs[e.upstream].append(i)
        ins[e.downstream].append(i)
    port_out: dict[int, float] = {}
    port_in: dict[int, float] = {}
    for ports, groups, neighbour in ((port_out, outs, 1), (port_in, ins, -2)):
        for n, group in groups.items():
            group.sort(key=lambda i: (grid.mid(grid.chains[i][neighbour]), i))
            # Far enough apart for a kind label on each line, up to four; closer beyond that.
            spread = min(NODE_H - 8, _LABEL_H * (len(group) - 1))
            for k, i in enumerate(group):
                offset = 0.0 if len(group) == 1 else -spread / 2 + spread * k / (len(group) - 1)
                ports[i] = boxes[n].y + NODE_H / 2 + offset
    return port_out, port_in


def _path(points: list[tuple[float, float]]) -> tuple[str, list[tuple[tuple[float, float], tuple[float, float]]]]:
    """The SVG path through an edge's points, and the stretches of it that cross a gap between columns."""
    d = [f"M{coord(points[0][0])} {coord(points[0][1])}"]
    gaps: list[tuple[tuple[float, float], tuple[float, float]]] = []
    for k in range(1, len(points)):
        (x0, y0), (x1, y1) = points[k - 1], points[k]
        if k % 2 == 1:  # across a gap between columns (or backwards, for an edge of a cycle)
            bend = _bend(x0, x1)
            d.append(f"C{coord(x0 + bend)} {coord(y0)} {coord(x1 - bend)} {coord(y1)} {coord(x1)} {coord(y1)}")
            gaps.append(((x0, y0), (x1, y1)))
        else:  # through a column, at a waypoint's free slot
            d.append(f"H{coord(x1)}")
    return " ".join(d), gaps


def _band_labels(team: str, band_y: float, width: float) -> list[tuple[str, Box]]:
    """A team's name as it fits over a column and its gap, and the room it takes: over the first column and again
    every few columns, so a reader scrolled sideways through a wide picture still sees whose band it is."""
    text = _fit(team, NODE_W + COL_GAP - 2 * MARGIN, _BAND_CHAR_PX)
    step = LABEL_EVERY * (NODE_W + COL_GAP)
    xs = [MARGIN + k * step for k in range(int((width - NODE_W) // step) + 1)]
    return [(text, Box(x, band_y + 4, len(text) * _BAND_CHAR_PX, 16)) for x in xs]


def _place_label(
    text: str, gaps: list[tuple[tuple[float, float], tuple[float, float]]], placed: list[Box]
) -> tuple[Box, str] | None:
    """On the line just before the arrow, where the curve has turned level and the label reads as the arrow's;
    else on the line where it leaves its source; else nowhere (it would overlap a label placed before it)."""
    w, h = len(text) * _LABEL_CHAR_PX + 4, _LABEL_H
    (fx0, fy0), (fx1, _) = gaps[0]
    (lx0, _), (lx1, ly1) = gaps[-1]
    spots = []
    if lx1 - lx0 >= w + 6:
        spots.append(Box(lx1 - 2 - w, ly1 - h / 2, w, h))
    if fx1 - fx0 >= w + 6:
        spots.append(Box(fx0 + 3, fy0 - h / 2, w, h))
    for box in spots:
        if not any(box.overlaps(other) for other in placed):
            placed.append(box)
            return box, text
    return None


def _bend(x0: float, x1: float) -> float:
    """How far the curve's control points reach sideways: halfway across, and enough to turn an edge around."""
    return max(abs(x1 - x0) / 2, 40.0)


# --------------------------------------------------------------------------------------------------
# SVG


def _fit(text: str, px: float, char_px: float = _CHAR_PX) -> str:
    room = max(1, int(px // char_px))
    return text if len(text) <= room else text[: room - 1].rstrip() + "…"


def summary(nodes: Sequence[Node], edges: Sequence[Edge]) -> str:
    teams = len({n.team for n in nodes})
    red = sum(1 for n in nodes if n.status in RED)
    stale = sum(1 for n in nodes if n.status == "stale")
    text = (
        f"{len(nodes)} KPI{'s' if len(nodes) != 1 else ''} in {teams} team{'s' if teams != 1 else ''} "
        f"with {len(edges)} dependenc{'ies' if len(edges) != 1 else 'y'}"
    )
    if red or stale:
        text += f"; {red} at risk or off track, {stale} stale"
    return text + ". Each box links to its KPI; the table below lists every dependency."


def graph_svg(
    nodes: Sequence[Node], edges: Sequence[Edge], *, title: str, uid: str = "graph", fit: bool = False
) -> SafeString:
    """The picture: team bands, KPI boxes in their status colours (each a link), edges with arrows and kind
    labels. Drawn at its natural size (the page lets it scroll sideways), or scaled to the page with `fit`."""
    by_id = {n.id: n for n in nodes}
    edges = [e for e in edges if e.upstream in by_id and e.downstream in by_id and e.upstream != e.downstream]
    placed = layout(nodes, edges)
    w, h = coord(placed.width), coord(placed.height)
    uid = escape(uid)
    parts = [
        f'<svg class="graph{" graph-fit" if fit else ""}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        f'aria-labelledby="{uid}-title {uid}-desc">'
        f'<title id="{uid}-title">{escape(title)}</title><desc id="{uid}-desc">{escape(summary(nodes, edges))}</desc>'
        "<defs>",
        *_arrow_markers(uid),
        '</defs><g class="bands">',
        *_band_parts(placed),
        '</g><g class="edges">',
        *_edge_parts(edges, placed, by_id, uid),
        '</g><g class="edge-labels" aria-hidden="true">',
        *_edge_label_parts(edges, placed, by_id),
        '</g><g class="nodes">',
        *_node_parts(nodes, placed),
        "</g></svg>",
    ]
    # Every caller-supplied string went through escape(); the rest is numbers and fixed class names.
    return mark_safe("".join(parts))


def _arrow_markers(uid: str) -> list[str]:
    return [
        f'<marker id="{uid}-{name}" class="{name}" viewBox="0 0 10 10" refX="1" refY="5" markerWidth="{coord(ARROW)}"'
        f' markerHeight="{coord(ARROW)}" markerUnits="userSpaceOnUse" orient="auto"><polygon points="0,0 10,5 0,10"/>'
        "</marker>"
        for name in ("arrow", "arrow-hot")
    ]


def _band_parts(placed: Layout) -> list[str]:
    w = coord(placed.width)
    return [
        f'<g class="band band-{"even" if i % 2 == 0 else "odd"}"><title>{escape(band.team)}</title>'
        f'<rect x="0" y="{coord(band.y)}" width="{w}" height="{coord(band.h)}"/>'
        + "".join(
            f'<text class="band-label" x="{coord(box.x)}" y="{coord(band.y + 16)}">{escape(text)}</text>'
            for text, box in _band_labels(band.team, band.y, placed.width)
        )
        + "</g>"
        for i, band in enumerate(placed.bands)
    ]


def _edge_parts(edges: list[Edge], placed: Layout, by_id: dict[int, Node], uid: str) -> list[str]:
    parts = []
    for e, d in zip(edges, placed.paths, strict=True):
        up, down = by_id[e.upstream], by_id[e.downstream]
        hot = up.status in RED
        what = e.kind_label or e.kind
        tip = f"{down.name} depends on {up.name}: {what}" + (f", lag {e.lag}" if e.lag else "")
        parts.append(
            f'<g class="edge edge-{escape(e.kind)}{" edge-hot" if hot else ""}"><title>{escape(tip)}</title>'
            f'<path d="{d}" marker-end="url(#{uid}-{"arrow-hot" if hot else "arrow"})"/></g>'
        )
    return parts


def _edge_label_parts(edges: list[Edge], placed: Layout, by_id: dict[int, Node]) -> list[str]:
    parts = []
    for e, label in zip(edges, placed.labels, strict=True):
        if label is None:
            continue
        box, text = label
        hot = " edge-label-hot" if by_id[e.upstream].status in RED else ""
        hot += " edge-label-suggested" if e.kind == "suggested" else ""
        parts.append(
            f'<text class="edge-label{hot}" x="{coord(box.x + box.w / 2)}" y="{coord(box.y + box.h / 2 + 3.5)}">'
            f"{escape(text)}</text>"
        )
    return parts


def _node_parts(nodes: Sequence[Node], placed: Layout) -> list[str]:
    parts = []
    for node in sorted(nodes, key=lambda n: (placed.nodes[n.id].x, placed.nodes[n.id].y)):
        box = placed.nodes[node.id]
        status = node.status if node.status in STATUS_LABELS else "no_data"
        label = STATUS_LABELS[status]
        tip = f"{node.name} ({node.key}), {node.team}: {label}"
        focus = " node-focus" if node.focus else ""
        parts.append(
            f'<a class="node-link" href="{escape(node.href)}"><g class="node node-{status}{focus}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{coord(box.x)}" y="{coord(box.y)}" width="{coord(box.w)}" height="{coord(box.h)}" rx="6"/>'
            f'<text class="node-name" x="{coord(box.x + 10)}" y="{coord(box.y + 16)}">'
            f"{escape(_fit(node.name, box.w - 18))}</text>"
            f'<text class="node-status" x="{coord(box.x + 10)}" y="{coord(box.y + 31)}">{label}</text></g></a>'
        )
    return parts

"""Pure tests of the dependency picture: no database, no request; the markup is parsed as XML."""

from __future__ import annotations

import random
import re
import time
import xml.etree.ElementTree as ET

import pytest
from django.utils.safestring import SafeString

from dependencies.graph import COL_GAP, MARGIN, NODE_W, Box, Edge, Node, graph_svg, layout

TEAMS = ["Supply Chain", "Finance", "Marketing", "Sales", "Leadership"]
STATUSES = ["on_track", "at_risk", "off_track", "stale", "no_data"]
KINDS = ["drives_demand", "consumes_capacity", "blocks", "informs"]


def node(i: int, team: str = "Ops", status: str = "on_track", name: str | None = None) -> Node:
    return Node(i, name or f"KPI {i}", f"k.{i}", team, status, f"/o/acme/kpis/{i}/")


def big(n: int = 100, edges: int = 150, seed: int = 7) -> tuple[list[Node], list[Edge]]:
    """`n` KPIs in five teams and `edges` random edges from lower to higher ids: a DAG with long edges and
    edges across every pair of teams, harder to draw than a real organization's graph."""
    rng = random.Random(seed)
    nodes = [node(i, TEAMS[i % 5], STATUSES[(i * 7) % 5], f"Key performance indicator {i}") for i in range(n)]
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < edges:
        a, b = rng.randrange(n), rng.randrange(n)
        if a < b:
            pairs.add((a, b))
    return nodes, [Edge(a, b, KINDS[(a + b) % 4]) for a, b in sorted(pairs)]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in el.get("class", "").split()]


def h_segments(d: str) -> list[tuple[float, float, float]]:
    """The horizontal runs (x0, x1, y) of a path: where a long edge passes a column through a free slot."""
    tokens = re.findall(r"[MCH][^MCH]*", d)
    runs, x, y = [], 0.0, 0.0
    for token in tokens:
        numbers = [float(v) for v in token[1:].split()]
        if token[0] == "H":
            runs.append((x, numbers[0], y))
            x = numbers[0]
        else:
            x, y = numbers[-2], numbers[-1]
    return runs


def test_a_small_graph_reads_left_to_right_with_one_link_per_kpi_and_one_path_per_edge():
    nodes = [node(1, "Marketing"), node(2, "Sales", "off_track"), node(3, "Finance")]
    edges = [Edge(1, 2, "drives_demand", "Drives demand", "1w"), Edge(2, 3, "informs", "Informs")]
    svg = graph_svg(nodes, edges, title="Dependencies")
    assert isinstance(svg, SafeString)
    root = parse(svg)
    links = root.findall(".//a")
    assert [a.get("href") for a in links] == ["/o/acme/kpis/1/", "/o/acme/kpis/2/", "/o/acme/kpis/3/"]
    assert len(root.findall(".//path")) == 2
    placed = layout(nodes, edges)
    assert placed.layers == {1: 0, 2: 1, 3: 2}
    assert placed.nodes[1].x < placed.nodes[2].x < placed.nodes[3].x
    # Teams are bands in name order, each labelled.
    assert [b.team for b in placed.bands] == ["Finance", "Marketing", "Sales"]
    assert {t.text for t in with_class(root, "band-label")} == {"Finance", "Marketing", "Sales"}
    # The edge from the red KPI is drawn red, with its own arrow; the kind and lag are in the tooltip.
    hot = with_class(root, "edge-hot")
    assert len(hot) == 1 and hot[0].find("title").text == "KPI 3 depends on KPI 2: Informs"
    assert "arrow-hot" in hot[0].find("path").get("marker-end")
    assert (
        with_class(root, "edge-drives_demand")[0].find("title").text == "KPI 2 depends on KPI 1: Drives demand, lag 1w"
    )
    assert [t.text for t in with_class(root, "edge-label")] == ["demand", "informs"]


def test_every_kpi_box_says_its_status_in_words_and_colour():
    nodes = [node(i, status=s) for i, s in enumerate(STATUSES)]
    root = parse(graph_svg(nodes, [], title="t"))
    boxes = with_class(root, "node")
    assert [b.get("class") for b in boxes] == [f"node node-{s}" for s in STATUSES]
    assert [t.text for t in with_class(root, "node-status")] == ["On track", "At risk", "Off track", "Stale", "No data"]


def test_the_picture_has_a_title_and_a_summary_for_screen_readers():
    nodes = [node(1, "A", "off_track"), node(2, "B", "stale"), node(3, "B")]
    root = parse(graph_svg(nodes, [Edge(1, 2, "blocks"), Edge(1, 3, "blocks")], title="Around X", uid="g1"))
    assert root.get("aria-labelledby") == "g1-title g1-desc"
    assert root.find("title").text == "Around X"
    assert root.find("desc").text.startswith("3 KPIs in 2 teams with 2 dependencies; 1 at risk or off track, 1 stale.")


def test_names_are_escaped_and_long_ones_shortened_with_the_full_name_in_the_tooltip():
    evil = '<script>alert("x")</script> & a very long name indeed'
    svg = str(graph_svg([node(1, "<b>Team</b>", name=evil), node(2)], [Edge(1, 2, "x<y")], title="<t>"))
    assert "<script>" not in svg and "<b>" not in svg and "<t>" not in svg
    root = parse(svg)
    name = with_class(root, "node-name")[0].text
    assert name.endswith("…") and len(name) < len(evil)
    assert root.find(".//a/g/title").text.startswith(evil)


def test_the_focus_kpi_is_marked():
    root = parse(graph_svg([node(1), Node(2, "B", "b", "Ops", "at_risk", "/b/", focus=True)], [], title="t"))
    assert [b.get("class") for b in with_class(root, "node-focus")] == ["node node-at_risk node-focus"]


def test_a_source_sits_next_to_its_nearest_consumer_not_in_the_first_column():
    # 1 -> 2 -> 3 -> 4, and 5 feeds only 4: longest-path layering alone would put 5 in column 0.
    edges = [Edge(1, 2, "blocks"), Edge(2, 3, "blocks"), Edge(3, 4, "blocks"), Edge(5, 4, "blocks")]
    placed = layout([node(i) for i in range(1, 6)], edges)
    assert placed.layers == {1: 0, 2: 1, 3: 2, 4: 3, 5: 2}


def test_the_layout_is_deterministic_whatever_order_the_input_comes_in():
    nodes, edges = big(60, 90)
    first = str(graph_svg(nodes, edges, title="t"))
    rng = random.Random(1)
    for _ in range(3):
        shuffled_nodes, shuffled_edges = nodes[:], edges[:]
        rng.shuffle(shuffled_nodes)
        rng.shuffle(shuffled_edges)
        again = graph_svg(shuffled_nodes, shuffled_edges, title="t")
        # Same boxes and the same set of paths (the markup lists edges in the caller's order).
        a, b = parse(first), parse(again)
        assert sorted(ET.tostring(el) for el in a.iter("a")) == sorted(ET.tostring(el) for el in b.iter("a"))
        assert sorted(p.get("d") for p in a.iter("path")) == sorted(p.get("d") for p in b.iter("path"))
    assert str(graph_svg(nodes, edges, title="t")) == first


def test_100_kpis_are_readable_no_box_or_label_overlaps_and_edges_point_right():
    nodes, edges = big(100, 150)
    started = time.perf_counter()
    placed = layout(nodes, edges)
    assert time.perf_counter() - started < 2.0  # ~25 ms here; generous for a loaded CI machine
    root = parse(graph_svg(nodes, edges, title="t"))
    assert len(root.findall(".//a")) == 100 and len(root.findall(".//path")) == 150
    boxes = list(placed.nodes.values())
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :])
    labels = [label[0] for label in placed.labels if label]
    assert len(labels) >= 0.9 * len(edges)  # a few give way rather than overlap
    for i, a in enumerate(labels):
        assert not any(a.overlaps(b) for b in labels[i + 1 :])
        assert not any(a.overlaps(b) for b in boxes)
    for e in edges:
        assert placed.nodes[e.upstream].x < placed.nodes[e.downstream].x
    # Each KPI sits inside its team's band.
    bands = {b.team: b for b in placed.bands}
    for n in nodes:
        band, box = bands[n.team], placed.nodes[n.id]
        assert band.y < box.y and box.y + box.h < band.y + band.h


def test_long_edges_pass_columns_through_free_slots_never_through_a_box():
    nodes, edges = big(100, 150)
    placed = layout(nodes, edges)
    runs = [run for d in placed.paths for run in h_segments(d)]
    assert runs, "the random graph has edges spanning several columns"
    for x0, x1, y in runs:
        assert x1 - x0 == pytest.approx(NODE_W)
        for box in placed.nodes.values():
            assert not (box.x < x1 and x0 < box.x + box.w and box.y <= y <= box.y + box.h)


def test_labels_sit_in_the_gaps_between_columns():
    nodes, edges = big(40, 60)
    placed = layout(nodes, edges)
    for label in filter(None, placed.labels):
        box: Box = label[0]
        column = int(box.x // (NODE_W + COL_GAP))
        gap_left = MARGIN + column * (NODE_W + COL_GAP) + NODE_W
        assert gap_left <= box.x and box.x + box.w <= gap_left + COL_GAP


def test_a_cycle_that_slipped_in_still_draws():
    edges = [Edge(1, 2, "blocks"), Edge(2, 3, "blocks"), Edge(3, 1, "blocks")]
    root = parse(graph_svg([node(1), node(2), node(3)], edges, title="t"))
    assert len(root.findall(".//a")) == 3 and len(root.findall(".//path")) == 3


def test_edges_to_unknown_kpis_and_self_loops_are_left_out():
    root = parse(
        graph_svg([node(1), node(2)], [Edge(1, 2, "blocks"), Edge(1, 9, "blocks"), Edge(2, 2, "x")], title="t")
    )
    assert len(root.findall(".//path")) == 1


def test_a_lone_kpi_draws_one_box():
    root = parse(graph_svg([node(1)], [], title="t"))
    assert len(root.findall(".//a")) == 1 and not root.findall(".//path")


def test_fit_scales_the_picture_to_its_container():
    assert parse(graph_svg([node(1)], [], title="t", fit=True)).get("class") == "graph graph-fit"
    assert parse(graph_svg([node(1)], [], title="t")).get("class") == "graph"


def test_wide_pictures_repeat_the_team_names():
    nodes = [node(i, "Ops") for i in range(12)]
    edges = [Edge(i, i + 1, "blocks") for i in range(11)]
    root = parse(graph_svg(nodes, edges, title="t"))
    assert [t.text for t in with_class(root, "band-label")] == ["Ops", "Ops", "Ops"]

"""Pure tests of the SVG charts: no database, no request; the markup is parsed as XML."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import models
from django.utils.safestring import SafeString

from scorecards.charts.line_chart import Band, Marker, kpi_chart
from scorecards.charts.sparkline import sparkline
from scorecards.charts.svg import nice_ticks

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def series(n: int, *, start: datetime = START, step: timedelta = timedelta(days=1), f=None):
    f = f or (lambda i: 100 + 10 * math.sin(i / 5))
    return [(start + i * step, f(i)) for i in range(n)]


def chart(**overrides) -> str:
    kwargs = {
        "points": series(30),
        "target": None,
        "target_line": None,
        "bands": [],
        "changes": [],
        "unit": "EUR",
        "tz": UTC,
        "title": "Revenue",
    }
    kwargs.update(overrides)
    return kpi_chart(**kwargs)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in el.get("class", "").split()]


def polyline_points(el: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in el.get("points", "").split()]


def y_axis(root: ET.Element) -> tuple[float, float]:
    """The plot's top and bottom y: the first and last horizontal grid lines."""
    ys = [float(line.get("y1")) for line in with_class(root, "grid")[0]]
    return min(ys), max(ys)


def tick_labels(root: ET.Element, axis: str) -> list[str]:
    return [t.text for t in with_class(root, axis)[0].iter("text") if "axis-title" not in t.get("class", "")]


# --- markup hygiene ------------------------------------------------------------------------------

ALL_KINDS = {
    "sparkline": lambda: sparkline(series(90), status="on_track", label="Revenue"),
    "sparkline-empty": lambda: sparkline([], status="no_data", label="Revenue"),
    "chart": lambda: chart(
        target=120,
        bands=[Band(None, 90, "off_track"), Band(90, 110, "at_risk"), Band(110, None, "on_track")],
        changes=[Marker(START + timedelta(days=10), "at_risk", "Slipped")],
    ),
    "chart-pace": lambda: chart(target_line=[(START, 90), (START + timedelta(days=60), 150)]),
    "chart-empty": lambda: chart(points=[]),
}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_output_is_safe_well_formed_svg_without_style_attributes(kind):
    svg = ALL_KINDS[kind]()
    assert isinstance(svg, SafeString)
    root = parse(svg)
    assert root.tag == "svg"
    assert root.get("role") == "img"
    assert root.find("title") is not None
    assert "style=" not in svg
    assert all("style" not in el.attrib for el in root.iter())


def test_embedded_text_is_escaped():
    evil = '<script>alert("x")</script> & co'
    outputs = [
        sparkline(series(10), status="at_risk", label=evil),
        sparkline([], status="at_risk", label=evil),
        chart(title=evil, unit=evil, changes=[Marker(START + timedelta(days=3), "on_track", evil)], target=105),
        chart(points=[], title=evil),
    ]
    for svg in outputs:
        assert "<script>" not in svg
        assert "&lt;script&gt;" in svg
        root = parse(svg)  # still well-formed: the & was escaped too
        assert root.find("title").text == evil


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="unknown status"):
        sparkline(series(5), status="green", label="x")
    with pytest.raises(ValueError, match="unknown status"):
        chart(bands=[Band(1, 2, 'x" onload="alert(1)')])


def test_status_choices_members_are_accepted():
    class Status(models.TextChoices):
        ON_TRACK = "on_track"
        AT_RISK = "at_risk"

    assert parse(sparkline(series(5), status=Status.ON_TRACK, label="x")).get("class") == "spark spark-on_track"
    root = parse(chart(bands=[Band(None, 100, Status.AT_RISK)], changes=[Marker(START, Status.ON_TRACK, "x")]))
    assert with_class(root, "band")[0].get("class") == "band band-at_risk"
    assert with_class(root, "marker")[0].get("class") == "marker marker-on_track"


# --- nice ticks ----------------------------------------------------------------------------------


def is_nice(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (0, 1200, [0, 250, 500, 750, 1000, 1250]),
        (0.1, 0.37, [0.1, 0.2, 0.3, 0.4]),
        (-37, -5, [-40, -30, -20, -10, 0]),
        (-120, 45, [-150, -100, -50, 0, 50]),
        (5, 5, None),
        (0, 0, None),
        (980, 1010, None),
        (0.001, 0.0042, None),
        (12_345, 98_765, None),
        (1_000_000, 1_000_003, None),
    ],
)
def test_nice_ticks(lo, hi, expected):
    ticks = nice_ticks(lo, hi)
    if expected is not None:
        assert ticks == pytest.approx(expected)
    assert 4 <= len(ticks) <= 6
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    assert is_nice(steps.pop())


def test_nice_ticks_are_exact_decimals_and_reject_non_finite():
    assert nice_ticks(0.1, 0.37)[2] == 0.3  # not 0.30000000000000004
    assert nice_ticks(1200, 0) == nice_ticks(0, 1200)
    with pytest.raises(ValueError):
        nice_ticks(0, math.inf)


def test_y_axis_labels_use_separators_and_compact_units():
    small = parse(chart(points=series(10, f=lambda i: 800 + 50 * i)))
    assert tick_labels(small, "axis-y") == ["750", "1,000", "1,250", "1,500"]
    large = parse(chart(points=series(10, f=lambda i: 5_000 * i)))
    labels = tick_labels(large, "axis-y")
    assert labels[-1].endswith("k") and all("," not in s for s in labels)
    axis_title = with_class(large, "axis-title")[0]
    assert axis_title.text == "EUR"


# --- sparkline -----------------------------------------------------------------------------------


def test_sparkline_markup():
    root = parse(sparkline(series(30), status="off_track", label="Churn"))
    assert root.get("class") == "spark spark-off_track"
    assert root.get("aria-label") == "Churn"
    assert root.find("title").text == "Churn"
    line = polyline_points(root.find("polyline"))
    dot = root.find("circle")
    assert (float(dot.get("cx")), float(dot.get("cy"))) == line[-1]
    xs = [x for x, _ in line]
    assert xs == sorted(xs)


def test_sparkline_is_compact_for_ninety_points():
    svg = sparkline(series(90, f=lambda i: 1234.567 + 89.1 * math.sin(i / 3)), status="at_risk", label="Revenue")
    assert len(svg.encode()) < 1500
    assert not re.search(r"\d\.\d\d", svg)  # coordinates are rounded to one decimal


def test_sparkline_downsampling_keeps_extremes_and_stays_under_the_limit():
    def wiggle(i: int) -> float:
        return math.sin(i / 37) * 10 + (500 if i == 1234 else 0) - (300 if i == 777 else 0)

    root = parse(sparkline(series(2_000, step=timedelta(hours=1), f=wiggle), status="on_track", label="x"))
    line = polyline_points(root.find("polyline"))
    assert 2 < len(line) <= 120
    ys = [y for _, y in line]
    # The spike and the dip are single points; both must still be the top and bottom of the line.
    spike_x = min(line, key=lambda p: p[1])[0]
    dip_x = max(line, key=lambda p: p[1])[0]
    assert min(ys) == pytest.approx(2.5) and max(ys) == pytest.approx(28 - 2.5)
    assert spike_x == pytest.approx(2.5 + 1234 / 1999 * 115, abs=0.1)
    assert dip_x == pytest.approx(2.5 + 777 / 1999 * 115, abs=0.1)
    assert len(str(sparkline(series(2_000), status="on_track", label="x")).encode()) < 1800


def test_sparkline_flat_series_draws_a_mid_line():
    root = parse(sparkline(series(10, f=lambda i: 7), status="stale", label="x", height=28))
    assert {y for _, y in polyline_points(root.find("polyline"))} == {14}


@pytest.mark.parametrize("n", [0, 1])
def test_sparkline_empty_state_is_a_dash(n):
    root = parse(sparkline(series(n), status="no_data", label="Nothing"))
    assert root.find("polyline") is None and root.find("circle") is None
    dash = root.find("line")
    assert dash.get("y1") == dash.get("y2") == "14"
    assert root.get("aria-label") == "Nothing"


def test_sparkline_ignores_non_finite_values():
    points = [*series(5), (START + timedelta(days=6), math.nan)]
    assert len(polyline_points(parse(sparkline(points, status="on_track", label="x")).find("polyline"))) == 5


# --- KPI chart -----------------------------------------------------------------------------------


def test_chart_scales_with_its_container():
    root = parse(chart(width=600, height=240))
    assert root.get("viewBox") == "0 0 600 240"
    assert root.get("width") == "100%"
    assert root.get("height") is None
    assert root.get("preserveAspectRatio").endswith("meet")


def test_y_range_covers_series_target_and_finite_band_edges():
    points = series(20, f=lambda i: 100 + i)  # 100..119
    root = parse(chart(points=points, target=150, bands=[Band(None, 60, "off_track"), Band(60, 80, "at_risk")]))
    top, bottom = y_axis(root)
    target_y = float(with_class(root, "target")[0].find("line").get("y1"))
    assert top < target_y < bottom  # strictly inside: padded, not on the edge
    rects = {r.get("class"): r for r in root.iter("rect")}
    at_risk = rects["band band-at_risk"]
    assert top < float(at_risk.get("y")) and float(at_risk.get("y")) + float(at_risk.get("height")) < bottom
    off_track = rects["band band-off_track"]  # low=None reaches the bottom of the plot
    assert float(off_track.get("y")) + float(off_track.get("height")) == pytest.approx(bottom)
    ys = [y for _, y in polyline_points(with_class(root, "series")[0])]
    assert top < min(ys) and max(ys) < bottom


def test_bands_are_drawn_behind_the_series():
    root = parse(chart(bands=[Band(95, None, "on_track")]))
    order = [el.get("class", "") for el in root]
    assert order.index("bands") < order.index("series")
    band = with_class(root, "band")[0]
    top, _ = y_axis(root)
    assert float(band.get("y")) == pytest.approx(top)  # high=None reaches the top of the plot


def test_positive_series_does_not_grow_a_negative_axis():
    root = parse(chart(points=series(10, f=lambda i: 2 * i)))
    assert tick_labels(root, "axis-y")[0] == "0"


def test_negative_series_does_not_grow_a_positive_axis():
    root = parse(chart(points=series(10, f=lambda i: -10 - 5 * i)))
    assert tick_labels(root, "axis-y")[-1] == "0"


def test_flat_series_chart():
    root = parse(chart(points=series(10, f=lambda i: 42)))
    ys = {y for _, y in polyline_points(with_class(root, "series")[0])}
    top, bottom = y_axis(root)
    assert len(ys) == 1 and top < ys.pop() < bottom
    assert 4 <= len(tick_labels(root, "axis-y")) <= 6


def test_dated_target_is_a_sloped_line_clipped_to_the_series():
    points = series(30)
    root = parse(
        chart(points=points, target_line=[(START - timedelta(days=10), 80), (START + timedelta(days=90), 180)])
    )
    pace = with_class(root, "target-pace")[0].find("polyline")
    line = polyline_points(pace)
    series_line = polyline_points(with_class(root, "series")[0])
    assert line[0][1] > line[-1][1]  # rising target: lower y on the right
    assert line[0][0] == pytest.approx(series_line[0][0]) and line[-1][0] == pytest.approx(series_line[-1][0])
    top, bottom = y_axis(root)
    assert all(top <= y <= bottom for _, y in line)
    label = with_class(root, "target-label")[0].text
    assert label == "Target 180 by 1 Jun 2025"


def test_no_target_draws_no_target_line():
    root = parse(chart())
    assert not with_class(root, "target")
    assert "target" not in root.find("desc").text


def test_status_changes_are_markers_with_a_hover_title():
    inside = Marker(START + timedelta(days=5), "off_track", "Off track: missed two weeks")
    outside = Marker(START - timedelta(days=5), "on_track", "Long ago")
    root = parse(chart(changes=[inside, outside]))
    markers = with_class(root, "marker")
    assert len(markers) == 1
    assert markers[0].get("class") == "marker marker-off_track"
    assert markers[0].find("title").text == "Off track: missed two weeks"


def test_last_value_is_labelled():
    points = series(10, f=lambda i: 1000 + 111.1 * i)  # last 1,999.9
    root = parse(chart(points=points))
    assert with_class(root, "last-label")[0].text == "2,000"
    dot = with_class(root, "last-dot")[0]
    assert (float(dot.get("cx")), float(dot.get("cy"))) == polyline_points(with_class(root, "series")[0])[-1]


def test_chart_downsamples_long_series_to_the_plot_width():
    root = parse(chart(points=series(5_000, step=timedelta(hours=1))))
    assert len(polyline_points(with_class(root, "series")[0])) <= 760


def test_desc_summarises_the_series():
    points = [(START + timedelta(days=i), v) for i, v in enumerate([1200, 950.5, 1800, 1500])]
    desc = parse(chart(points=points, target=2000, unit="EUR")).find("desc").text
    assert desc == (
        "Series of 4 points from 3 Mar 2025 to 6 Mar 2025; latest 1,500 EUR on 6 Mar 2025; "
        "target 2,000 EUR; min 950.5 EUR, max 1,800 EUR."
    )
    dated = chart(points=points, target_line=[(START, 1000), (datetime(2025, 12, 31, 12, tzinfo=UTC), 3000)])
    assert "target 3,000 EUR by 31 Dec 2025" in parse(dated).find("desc").text
    single = parse(chart(points=points[:1], unit="")).find("desc").text
    assert single.startswith("Series of 1 point on 3 Mar 2025; latest 1,200 on 3 Mar 2025")


def test_empty_chart():
    root = parse(chart(points=[], title="Revenue"))
    assert "No data yet" in [t.text for t in root.iter("text")]
    assert root.get("aria-label") == "Revenue"
    assert root.find("desc").text == "No data yet."
    assert root.get("width") == "100%"


def test_date_ticks_and_summary_use_the_given_timezone():
    late_evening = datetime(2025, 3, 1, 23, 30, tzinfo=UTC)  # already 2 March in Berlin
    points = series(5, start=late_evening)
    berlin = parse(chart(points=points, tz=BERLIN))
    utc = parse(chart(points=points, tz=UTC))
    assert tick_labels(berlin, "axis-x") == ["3 Mar", "4 Mar", "5 Mar", "6 Mar"]
    assert tick_labels(utc, "axis-x") == ["2 Mar", "3 Mar", "4 Mar", "5 Mar"]
    assert berlin.find("desc").text.startswith("Series of 5 points from 2 Mar 2025 to 6 Mar 2025")
    assert utc.find("desc").text.startswith("Series of 5 points from 1 Mar 2025 to 5 Mar 2025")
    one = parse(chart(points=[(late_evening, 1.0)], tz=BERLIN))
    assert tick_labels(one, "axis-x") == ["2 Mar"]


@pytest.mark.parametrize(
    ("days", "pattern"),
    [
        (10, r"^\d{1,2} [A-Z][a-z]{2}$"),  # days
        (60, r"^\d{1,2} [A-Z][a-z]{2}$"),  # weeks
        (400, r"^[A-Z][a-z]{2}( \d{4})?$"),  # months, with the year on the first and on January
    ],
)
def test_date_tick_granularity_follows_the_span(days, pattern):
    root = parse(chart(points=series(days + 1), tz=BERLIN))
    labels = tick_labels(root, "axis-x")
    assert 2 <= len(labels) <= 12
    assert all(re.match(pattern, s) for s in labels), labels
    if days == 60:
        # Weekly ticks fall on Mondays.
        ticks = [datetime.strptime(f"{s} 2025", "%d %b %Y") for s in labels]
        assert {t.weekday() for t in ticks} == {0}
    if days == 400:
        assert labels[0].endswith("2025") and "Jan 2026" in labels


def test_x_tick_labels_do_not_overlap():
    for days in (3, 20, 45, 119, 200, 900, 4000):
        root = parse(chart(points=series(days + 1), width=400))
        texts = list(with_class(root, "axis-x")[0].iter("text"))
        xs = [float(t.get("x")) for t in texts]
        widths = [len(t.text) * 6.6 for t in texts]
        for (x1, w1), (x2, w2) in zip(zip(xs, widths, strict=True), zip(xs[1:], widths[1:], strict=True), strict=False):
            assert x2 - x1 >= (w1 + w2) / 2, (days, [t.text for t in texts])
        assert all(x - w / 2 >= 0 and x + w / 2 <= 400 for x, w in zip(xs, widths, strict=True))

"""The formula of a calculated KPI as a pure function: parsing, evaluation, units, and the reasons for no value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scorecards.formulas import FormulaError, NoValue, Term, check_unit, parse

UNITS = {"fin.revenue": "EUR", "fin.cogs": "EUR", "fin.margin": "%", "sales.orders": "orders", "ops.a-b": "h"}


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("(fin.revenue - fin.cogs) / fin.revenue", {"fin.revenue": 10, "fin.cogs": 4}, 0.6),
        ("fin.revenue * 2 + 1", {"fin.revenue": 3}, 7),
        ("-fin.cogs", {"fin.cogs": 4}, -4),
        ("last(fin.revenue) / 4", {"fin.revenue": 10}, 2.5),
        ("`ops.a-b` - 1", {"ops.a-b": 3}, 2),
    ],
)
def test_it_evaluates_arithmetic_over_last_values(text, values, expected):
    formula = parse(text, keys=UNITS)
    assert formula.evaluate(lambda term: values[term.key]) == pytest.approx(expected)


def test_it_reads_windowed_aggregates_as_terms():
    formula = parse("sum(sales.orders, 7d) - avg(sales.orders, 4w) * 7 + max(sales.orders, 1d)", keys=UNITS)
    assert sorted(formula.terms.values(), key=str) == sorted(
        [
            Term("sales.orders", "sum", timedelta(days=7)),
            Term("sales.orders", "avg", timedelta(weeks=4)),
            Term("sales.orders", "max", timedelta(days=1)),
        ],
        key=str,
    )
    values = {"sum": 70, "avg": 7, "max": 12}
    assert formula.evaluate(lambda term: values[term.fn]) == 33
    assert formula.keys == {"sales.orders"}


@pytest.mark.parametrize(
    "text, message, column",
    [
        ("fin.revenue +", "is not a formula", None),
        ("fin.revenue + fin.nope", 'unknown KPI "fin.nope"', 15),
        ('__import__("os")', "unknown function", 1),
        ("fin.revenue ** 2", "only +, -, * and / are allowed", 1),
        ("fin.revenue[0]", "is not allowed in a formula", 1),
        ("fin.revenue if fin.cogs else 1", "is not allowed in a formula", 1),
        ("'text' * 2", "is not a number", 1),
        ("sum(sales.orders)", "sum() needs a window", 1),
        ("last(sales.orders, 7d)", "last() takes no window", 1),
        ("sum(2, 7d)", "must be a KPI key", 1),
        ("sum(sales.orders, 0d)", "longer than 0m", 19),
        ("fin.revenue / 7d", "7d is not a number", 15),
        ("fin.revenue.__class__", 'unknown KPI "fin.revenue.__class__"', 1),
        ("", "is empty", None),
    ],
)
def test_it_refuses_what_is_not_a_formula_with_the_column(text, message, column):
    with pytest.raises(FormulaError) as e:
        parse(text, keys=UNITS)
    assert message in e.value.message
    if column is not None:
        assert e.value.column == column


@pytest.mark.parametrize(
    "text, unit",
    [
        ("fin.revenue - fin.cogs", "EUR"),
        ("(fin.revenue - fin.cogs) / fin.revenue", ""),  # a ratio of one unit is unitless
        ("fin.revenue / 2", "EUR"),
        ("fin.revenue / sales.orders", "EUR/orders"),
        ("fin.revenue * 1.19 + 5", "EUR"),
        ("fin.cogs / fin.revenue * 100 + fin.margin", "%"),
    ],
)
def test_it_works_out_the_unit(text, unit):
    assert parse(text, keys=UNITS).units == unit


def test_it_refuses_adding_unlike_units():
    with pytest.raises(FormulaError) as e:
        parse("fin.revenue + fin.margin", keys=UNITS)
    assert e.value.message == 'cannot add "%" (fin.margin) to "EUR" (fin.revenue)'
    with pytest.raises(FormulaError, match=r'cannot subtract "orders" \(sum\(sales.orders, 7d\)\) from "EUR"'):
        parse("fin.revenue - sum(sales.orders, 7d)", keys=UNITS)


def test_a_result_with_a_unit_feeds_only_a_kpi_of_that_unit():
    check_unit(parse("fin.revenue - fin.cogs", keys=UNITS), "EUR")
    check_unit(parse("fin.cogs / fin.revenue", keys=UNITS), "%")  # unitless feeds any KPI
    with pytest.raises(FormulaError, match='gives "EUR" but the KPI\'s unit is "%"'):
        check_unit(parse("fin.revenue - fin.cogs", keys=UNITS), "%")


def test_division_by_zero_names_the_divisor():
    formula = parse("(fin.revenue - fin.cogs) / fin.revenue", keys=UNITS)
    with pytest.raises(NoValue, match="^fin.revenue is 0$"):
        formula.evaluate(lambda term: {"fin.revenue": 0, "fin.cogs": 3}[term.key])
    formula = parse("fin.revenue / (fin.cogs - 3)", keys=UNITS)
    with pytest.raises(NoValue, match=r"^fin.cogs - 3 is 0$"):
        formula.evaluate(lambda term: 3)


def test_a_missing_input_names_the_kpi_and_the_window():
    formula = parse("fin.revenue - fin.cogs", keys=UNITS)
    with pytest.raises(NoValue, match="^no data for fin.cogs$"):
        formula.evaluate(lambda term: {"fin.revenue": 1}.get(term.key))
    formula = parse("sum(sales.orders, 7d)", keys=UNITS)
    with pytest.raises(NoValue, match="^no data for sales.orders in the window$"):
        formula.evaluate(lambda term: None)

"""Calculated KPIs: a formula over other KPIs of the organization, by key (docs/manifest.md, "Formulas"). Pure.

`(fin.revenue - fin.cogs) / fin.revenue`, `sum(sales.orders, 7d)`, `avg(x, 4w)`, `last(x)`: numbers, the four
operators, parentheses, unary minus, and the aggregations of scorecards.aggregations over a KPI and an optional
window. A bare key is its last value. A key that is not a dotted name (`a-b`, `2024.x`) is written in
backquotes. The text is parsed once into a tree; simpleeval walks that tree, so nothing is ever `eval`ed and only
these node kinds exist. Errors carry the 1-based column in the formula as written.
"""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from simpleeval import SimpleEval

from governance.durations import parse_duration
from scorecards.aggregations import AGGREGATIONS, LAST

MAX_LENGTH = 2000
# What the text may hold besides keys: durations in a window argument and backquoted keys are rewritten first.
_TOKENS = re.compile(r"`(?P<quoted>[^`]*)`|(?<![\w.])(?P<duration>\d+[mhdw])(?![\w.])")
_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class FormulaError(ValueError):
    """The formula cannot be used as written: `column` (1-based) points at the problem."""

    def __init__(self, message: str, column: int | None = None):
        self.message, self.column = message, column
        super().__init__(f"column {column}: {message}" if column else message)


class NoValue(Exception):  # noqa: N818 - an outcome, not a fault: the KPI shows "no value: <reason>"
    """The formula has no value now; the reason is shown on the KPI."""


@dataclass(frozen=True)
class Term:
    """One input of a formula: `fn` of a KPI over `window` (None: the last value)."""

    key: str
    fn: str = LAST
    window: timedelta | None = None


@dataclass
class Formula:
    text: str
    tree: ast.Expression
    terms: dict[str, Term]  # the tree's placeholder names -> what they read
    source: _Source
    units: str | None = None  # the result's unit once checked; None when it adapts (a plain number)

    @property
    def keys(self) -> set[str]:
        return {term.key for term in self.terms.values()}

    def evaluate(self, value_of: Callable[[Term], float | None]) -> float:
        """The value, given each term's value (None: no data); raises NoValue with the reason."""
        evaluator = getattr(_local, "evaluator", None) or _Evaluator()
        _local.evaluator = evaluator  # one per thread: building simpleeval's tables costs more than most formulas
        evaluator.formula, evaluator.value_of = self, value_of
        return evaluator.eval(self.text, previously_parsed=self.tree.body)


class _Source:
    """The formula rewritten for Python's parser, and the way back from its columns to the text's."""

    def __init__(self, text: str):
        self.text, parts, self._shifts, last = text, [], [], 0
        for match in _TOKENS.finditer(text):
            parts.append(text[last : match.start()])
            new_start = sum(map(len, parts))
            replacement = f"__q{len(self._shifts)}" if match["quoted"] is not None else f'"{match["duration"]}"'
            self._shifts.append((new_start, new_start + len(replacement), match.start(), match))
            parts.append(replacement)
            last = match.end()
        parts.append(text[last:])
        self.python = "".join(parts)
        self.quoted = {f"__q{i}": m["quoted"] for i, (_, _, _, m) in enumerate(self._shifts) if m["quoted"] is not None}

    def column(self, offset: int) -> int:
        """The 1-based column in the text of a 0-based offset in the rewritten source."""
        delta = 0
        for new_start, new_end, old_start, match in self._shifts:
            if offset < new_start:
                break
            if offset < new_end:
                return old_start + 1
            delta = match.end() - new_end
        return offset + delta + 1

    def segment(self, node: ast.AST) -> str:
        """The node as the text writes it."""
        end = node.end_col_offset
        for new_start, new_end, _, match in self._shifts:
            if new_start < end <= new_end:
                return self.text[self.column(node.col_offset) - 1 : match.end()]
        return self.text[self.column(node.col_offset) - 1 : self.column(end - 1)]


def parse(text: str, *, keys: Mapping[str, str] | None = None) -> Formula:
    """The formula, checked: syntax, names (against `keys`, key -> unit, when given) and units."""
    text = text.strip()
    if not text:
        raise FormulaError("is empty")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"is longer than {MAX_LENGTH} characters")
    source = _Source(text)
    try:
        tree = ast.parse(source.python, mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"is not a formula ({e.msg})", source.column((e.offset or 1) - 1)) from None
    checker = _Checker(source)
    tree.body = checker.visit(tree.body)
    formula = Formula(text=text, tree=tree, terms=checker.terms, source=source)
    if keys is not None:
        for name, term in formula.terms.items():
            if term.key not in keys:
                column = source.column(checker.offsets[name])
                raise FormulaError(f'unknown KPI "{term.key}" (not a KPI of this organization)', column)
        formula.units = _unit(tree.body, keys, formula.terms, source)
    return formula


@lru_cache(maxsize=50_000)
def parsed(text: str) -> Formula:
    """A stored formula (validated when it was set), parsed once per process; treat it as read-only."""
    return parse(text)


class _Checker(ast.NodeTransformer):
    """Accepts only the node kinds of a formula and replaces every KPI reading by a placeholder name."""

    def __init__(self, source: _Source):
        self.source, self.terms, self.offsets = source, {}, {}

    def _term(self, node: ast.AST, term: Term) -> ast.Name:
        name = f"_t{len(self.terms)}"
        self.terms[name], self.offsets[name] = term, node.col_offset
        return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)

    def _at(self, node: ast.AST) -> int:
        return self.source.column(getattr(node, "col_offset", 0))

    def _key(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.source.quoted.get(node.id, node.id)
        if isinstance(node, ast.Attribute) and (inner := self._key(node.value)) is not None:
            return f"{inner}.{node.attr}"
        return None

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.Name | ast.Attribute):
            key = self._key(node)
            if key is None:
                raise FormulaError(f'"{self.source.segment(node)}" is not a KPI key', self._at(node))
            return self._term(node, Term(key))
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise FormulaError(f"{self.source.segment(node)} is not a number", self._at(node))
            return node
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise FormulaError("only +, -, * and / are allowed", self._at(node))
            node.left, node.right = self.visit(node.left), self.visit(node.right)
            return node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            node.operand = self.visit(node.operand)
            return node
        if isinstance(node, ast.Call):
            return self._call(node)
        raise FormulaError(f'"{self.source.segment(node)}" is not allowed in a formula', self._at(node))

    def _call(self, node: ast.Call) -> ast.Name:
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        if fn not in AGGREGATIONS:
            raise FormulaError(f"unknown function; use one of {', '.join(AGGREGATIONS)}", self._at(node))
        if node.keywords or not 1 <= len(node.args) <= 2:
            raise FormulaError(f"{fn}() takes a KPI key and an optional window: {fn}(key, 7d)", self._at(node))
        key = self._key(node.args[0])
        if key is None:
            raise FormulaError(f"the first argument of {fn}() must be a KPI key", self._at(node))
        window = None
        if len(node.args) == 2:
            arg = node.args[1]
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise FormulaError(f"the window of {fn}() is a duration such as 7d or 4w", self._at(node))
            window = parse_duration(arg.value)
            if not window:
                raise FormulaError("a window must be longer than 0m", self.source.column(arg.col_offset))
        if fn == LAST and window is not None:
            raise FormulaError("last() takes no window", self._at(node))
        if fn != LAST and window is None:
            raise FormulaError(f"{fn}() needs a window: {fn}({key}, 7d)", self._at(node))
        return self._term(node, Term(key, fn, window))

    visit_Expression = generic_visit  # noqa: N815 - NodeTransformer's naming


def _unit(node: ast.AST, keys: Mapping[str, str], terms: dict[str, Term], source: _Source) -> str | None:
    """The unit of a node (None: a plain number, which takes the unit it meets); refuses adding unlike units.

    A ratio of the same unit is unitless (""), and so is a percentage ("%") when added to one; other products and
    ratios get a compound unit ("EUR/h")."""
    if isinstance(node, ast.Name):
        return keys[terms[node.id].key] or None  # a KPI without a unit takes the one it meets, as a number does
    if isinstance(node, ast.Constant):
        return None
    if isinstance(node, ast.UnaryOp):
        return _unit(node.operand, keys, terms, source)
    left, right = _unit(node.left, keys, terms, source), _unit(node.right, keys, terms, source)
    if isinstance(node.op, ast.Add | ast.Sub):
        if left is not None and right is not None and left != right and {left, right} != {"", "%"}:
            verb, word = ("add", "to") if isinstance(node.op, ast.Add) else ("subtract", "from")
            raise FormulaError(
                f'cannot {verb} "{right}" ({source.segment(node.right)}) {word} "{left}" ({source.segment(node.left)})',
                source.column(node.col_offset),
            )
        # A percentage is a unitless number too: a ratio times 100 may be added to one.
        return "%" if "%" in (left, right) else left if left is not None else right
    if left is None and right is None:
        return None
    if isinstance(node.op, ast.Mult):
        units = [unit for unit in (left, right) if unit]
        return "*".join(units)
    if not right:
        return left or ""
    if not left:
        return f"1/{right}"
    return "" if left == right else f"{left}/{right}"


def check_unit(formula: Formula, unit: str) -> None:
    """A formula whose result has a unit may not feed a KPI of another unit; a unitless one may feed any, and a
    KPI without a unit takes any result."""
    if formula.units and unit and unit != formula.units:
        raise FormulaError(f'gives "{formula.units}" but the KPI\'s unit is "{unit}"')


_local = threading.local()


class _Evaluator(SimpleEval):
    formula: Formula
    value_of: Callable[[Term], float | None]

    def __init__(self):
        super().__init__(names=self._name)
        self.operators = {ast.Add: _add, ast.Sub: _sub, ast.Mult: _mul, ast.Div: _div, ast.USub: _neg, ast.UAdd: _pos}

    def _name(self, node: ast.Name) -> float:
        term = self.formula.terms[node.id]
        value = self.value_of(term)
        if value is None:
            where = "" if term.window is None else " in the window"
            raise NoValue(f"no data for {term.key}{where}")
        return value

    def _eval_binop(self, node: ast.BinOp) -> float:
        if isinstance(node.op, ast.Div):
            dividend, divisor = self._eval(node.left), self._eval(node.right)  # left first: its reason first
            if divisor == 0:
                raise NoValue(f"{self.formula.source.segment(node.right)} is 0")
            return dividend / divisor
        return super()._eval_binop(node)


def _add(a: float, b: float) -> float:
    return a + b


def _sub(a: float, b: float) -> float:
    return a - b


def _mul(a: float, b: float) -> float:
    return a * b


def _div(a: float, b: float) -> float:
    return a / b


def _neg(a: float) -> float:
    return -a


def _pos(a: float) -> float:
    return +a

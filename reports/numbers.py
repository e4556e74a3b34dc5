"""How numbers are rounded and written in every report format: one rule, one place.

The HTML, Markdown and JSON reports must show the *same* numbers. A table cell is written once,
as text, by the functions here (:func:`interval_text`, :func:`p_text`, :func:`number_text`),
and every format prints that text: the JSON's ``tables`` hold it verbatim and its ``analysis``
part the full-precision numbers behind it.

Precision follows the evidence: an estimate with an interval keeps as many decimals as the
interval's width supports (two significant digits of the width: ``−4.0 [−5.5, −2.5]``,
``−0.42 [−0.61, −0.23]``); p-values read ``0.012`` or ``< 0.001``; counts are whole numbers;
other numbers keep three significant digits, never in exponent notation. Negative numbers use
the minus sign (U+2212).

The older :class:`Rule` rounding (to a JSON number) is kept for the values of the ranked lists
(:func:`display_value`), and a column's rule, found from its name, still picks how a table cell
of that column is written (:attr:`reports.document.Column.cell_kind`: a p-value rule gives a
``p`` cell, and so on).

Rules by column, first match wins (see :data:`COLUMN_RULES`): p-values keep three significant
digits (so ``3.2e-07`` stays readable), counts are integers, retrieval metrics shown as
percentages keep two decimals, ranks are whole numbers unless ties were averaged, everything
else keeps four significant digits.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

MISSING_TEXT = "–"  # shown where the JSON holds null (not estimable, not applicable)


@dataclass(frozen=True)
class Rule:
    """Round a number for display: ``significant`` digits, ``decimals``, or ``integer``."""

    kind: str
    digits: int = 0
    scale: float = 1.0  # e.g. 100 to show a fraction as a percentage

    def apply(self, value: Any) -> Any:
        """The rounded value (int, float or None); non-numbers pass through unchanged."""
        if value is None or isinstance(value, (bool, str)):
            return value
        try:
            x = float(value)
        except (TypeError, ValueError):
            return value
        if not math.isfinite(x):
            return None
        x *= self.scale
        return _ROUNDERS[self.kind](x, self.digits)


def _significant(x: float, digits: int) -> float:
    return 0.0 if x == 0 else float(f"{x:.{digits}g}")


def _decimals(x: float, digits: int) -> float:
    return float(f"{x:.{digits}f}") + 0.0  # + 0.0 turns -0.0 into 0.0


def _integer(x: float, digits: int) -> int:
    return int(round(x))


def _rank(x: float, digits: int) -> int | float:
    # Ranks are whole numbers unless ties were averaged (2.5); keep them as the reader expects.
    return int(x) if x.is_integer() else _decimals(x, digits)


_ROUNDERS: dict[str, Callable[[float, int], Any]] = {
    "significant": _significant,
    "decimals": _decimals,
    "integer": _integer,
    "rank": _rank,
}

P_VALUE = Rule("significant", 3)
COUNT = Rule("integer")
PERCENT = Rule("decimals", 2, scale=100.0)
ESTIMATE = Rule("significant", 4)
RANK = Rule("rank", 2)

# Column-name patterns (fnmatch, case-sensitive) -> rule. Order matters: first match wins.
COLUMN_RULES: tuple[tuple[str, Rule], ...] = (
    ("p", P_VALUE),
    ("p_*", P_VALUE),
    ("*_p", P_VALUE),
    ("pvalue*", P_VALUE),
    ("p-*", P_VALUE),
    ("q_value*", P_VALUE),
    ("n", COUNT),
    ("n_*", COUNT),
    ("*_n", COUNT),
    ("count*", COUNT),
    ("rank", RANK),
    ("*_rank", RANK),
    ("rank:*", RANK),
    ("rank_*", RANK),
    ("b", COUNT),
    ("c", COUNT),
    ("df", COUNT),
    ("position", COUNT),
    ("layer", COUNT),
    ("seed", COUNT),
    ("*_pct", PERCENT),
)


def rule_for(column: str) -> Rule:
    """The display rule of a column name (falls back to four significant digits)."""
    for pattern, rule in COLUMN_RULES:
        if fnmatch.fnmatchcase(column, pattern):
            return rule
    return ESTIMATE


def display_value(value: Any, rule: Rule | None = None, column: str | None = None) -> Any:
    """``value`` rounded by ``rule`` (or by the rule of ``column``); JSON-ready."""
    if rule is None:
        rule = rule_for(column or "")
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and rule.scale == 1.0:
        return value  # integers are exact already; rounding them to digits would only hide them
    return rule.apply(value)


MINUS = "\u2212"
P_FLOOR = 0.001  # p-values below it read "< 0.001"
MAX_DECIMALS = 4


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None for a missing, non-numeric, boolean or non-finite value."""
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fixed(x: float, decimals: int) -> str:
    """``x`` with ``decimals`` decimals, the minus sign for negatives and no ``-0``."""
    text = f"{x:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def decimals_for_width(width: float | None) -> int:
    """Decimals that show two significant digits of an interval's width (0 to :data:`MAX_DECIMALS`)."""
    if width is None or not math.isfinite(width) or width <= 0:
        return 1
    return int(min(MAX_DECIMALS, max(0, 1 - math.floor(math.log10(width)))))


def decimals_for_value(x: float, significant: int = 3) -> int:
    if x == 0:
        return 0
    return int(min(MAX_DECIMALS, max(0, significant - 1 - math.floor(math.log10(abs(x))))))


def number_text(value: Any, decimals: int | None = None) -> str | None:
    """A number with ``decimals`` (default: three significant digits), or None when missing."""
    x = finite_number(value)
    if x is None:
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool) and decimals is None:
        return fixed(x, 0)
    return fixed(x, decimals_for_value(x) if decimals is None else decimals)


def count_text(value: Any) -> str | None:
    x = finite_number(value)
    return None if x is None else fixed(round(x), 0)


def level_text(level: Any) -> str:
    """An interval's coverage as a percentage (0.95 -> "95%"); a value that is not a number as it is."""
    try:
        return f"{100 * float(level):g}%"
    except (TypeError, ValueError):
        return str(level)


def rank_text(value: Any) -> str | None:
    """Whole ranks as integers; averaged ties keep one decimal (2.5)."""
    x = finite_number(value)
    if x is None:
        return None
    return fixed(x, 0) if float(x).is_integer() else fixed(x, 1)


def p_text(value: Any) -> str | None:
    """``< 0.001``, or two significant digits (``0.012``, ``0.59``, ``1.00``)."""
    x = finite_number(value)
    if x is None:
        return None
    if x < P_FLOOR:
        return "< 0.001"
    return fixed(x, 3 if x < 0.1 else 2)


def _bound(x: float, decimals: int) -> str:
    """An interval's end; one that is not zero but would round to it keeps one significant digit, so
    the reader sees on which side of zero it lies (``[−12, −0.04]``, not ``[−12, 0]``)."""
    text = fixed(x, decimals)
    if x != 0 and float(text.replace(MINUS, "-")) == 0:
        return fixed(x, decimals_for_value(x, 1))
    return text


def interval_decimals(low: Any, high: Any) -> int:
    lo, hi = finite_number(low), finite_number(high)
    return decimals_for_width(None if lo is None or hi is None else hi - lo)


def interval_text(estimate: Any, low: Any, high: Any, *, decimals: int | None = None, unit: str = "") -> str | None:
    """``−4.0 [−5.5, −2.5]`` (with ``unit``: ``−4.0 pp [−5.5, −2.5]``); the estimate alone without an
    interval; None when there is no estimate. ``estimate=None`` with an interval gives ``[−5.5, −2.5]``."""
    est, lo, hi = finite_number(estimate), finite_number(low), finite_number(high)
    d = interval_decimals(lo, hi) if decimals is None else decimals
    head = "" if est is None else fixed(est, d if lo is not None and hi is not None else
                                          (decimals if decimals is not None else decimals_for_value(est)))
    if unit and head:
        head += f" {unit}"
    if lo is None or hi is None:
        return head or None
    bracket = f"[{_bound(lo, d)}, {_bound(hi, d)}]"
    return f"{head} {bracket}" if head else bracket


def parse_number(text: str) -> float:
    """A number as :func:`fixed` writes it (the minus sign included) back to a float."""
    return float(text.replace(MINUS, "-"))


def value_text(value: Any) -> str:
    """The text of an already rounded value: its JSON token for numbers, ``–`` for null."""
    if value is None:
        return MISSING_TEXT
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return str(value)

"""How numbers are rounded and written in every report format: one rule, one place.

The HTML, Markdown and JSON reports must show the *same* numbers. Instead of formatting each
format separately, a value is first rounded to its display precision by a :class:`Rule`
(chosen from the column it belongs to), and the rounded value is then written as its JSON
token (``json.dumps``) everywhere: in a JSON file it is the number itself, in HTML and
Markdown it is the cell text. So a reader (or a test) can find every shown number verbatim in
the JSON.

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


def value_text(value: Any) -> str:
    """The text of an already rounded value: its JSON token for numbers, ``–`` for null."""
    if value is None:
        return MISSING_TEXT
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return str(value)

"""One way to make a value JSON-safe: numpy and pandas scalars and containers to plain Python.

Torch-free and free of pandas imports, so the trace writer, the analysis results and the reports
all use it. The callers differ only in two choices, which are parameters: how many significant
digits a float keeps (results round to stay stable across platforms) and what an object of an
unknown type becomes (its ``str`` or its ``repr``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

__all__ = ["jsonable", "round_float"]

_MISSING_TYPES = ("NAType", "NaTType")  # pandas.NA and pandas.NaT, recognised without importing pandas


def round_float(x: float, digits: int | None) -> float | None:
    """``x`` to ``digits`` significant digits; None for NaN and infinities (JSON has neither)."""
    if not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.{digits}g}") if digits else x


def jsonable(value: Any, *, float_digits: int | None = None, finite: bool = False,
             unknown: Callable[[Any], Any] = str) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes without a ``default``.

    Dicts get string keys; lists, tuples, arrays, Series and Index become lists; sets become sorted
    lists; numpy scalars become Python scalars; paths become strings; ``None``, ``pandas.NA`` and
    ``NaT`` become None. Floats keep ``float_digits`` significant digits when given; with
    ``finite`` (implied by ``float_digits``) NaN and infinities become None. Anything else becomes
    ``unknown(value)``.
    """
    def convert(v: Any) -> Any:
        if v is None or type(v).__name__ in _MISSING_TYPES:
            return None
        if isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return round_float(float(v), float_digits) if (finite or float_digits) else float(v)
        if isinstance(v, dict):
            return {str(k): convert(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, (set, frozenset)):
            return sorted((convert(x) for x in v), key=str)
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if hasattr(v, "tolist"):  # numpy arrays and scalars, pandas Series and Index
            return convert(v.tolist())
        if hasattr(v, "item"):
            return convert(v.item())
        return unknown(v)

    return convert(value)

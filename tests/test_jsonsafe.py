"""mosaic.core.jsonsafe: the one JSON-safety helper of the trace writer, the analysis results and the reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from mosaic.core.jsonsafe import jsonable, round_float


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"

    def __str__(self) -> str:
        return "opaque"


def test_numpy_and_pandas_values_become_plain_python():
    value = {1: np.int64(3), "a": np.float32(0.5), "b": np.array([[1, 2]]), "c": pd.Series([1.5, np.nan]),
             "d": (np.bool_(True), None, pd.NA, pd.NaT), "e": {3, 1, 2}, "f": Path("x/y"), "g": pd.Index(["u"])}
    out = jsonable(value)
    assert out == {"1": 3, "a": 0.5, "b": [[1, 2]], "c": [1.5, out["c"][1]], "d": [True, None, None, None],
                   "e": [1, 2, 3], "f": "x/y", "g": ["u"]}
    assert math.isnan(out["c"][1])  # floats are kept as they are unless asked to be finite
    assert type(out["1"]) is int and type(out["d"][0]) is bool
    json.dumps(jsonable(value, finite=True), allow_nan=False)


def test_float_digits_round_and_turn_non_finite_into_null():
    assert jsonable([1 / 3, np.inf, -0.0, np.float64(2.5e-20)], float_digits=12) == [0.333333333333, None, 0.0, 2.5e-20]
    assert round_float(123456.789, 4) == 123500.0 and round_float(float("nan"), 4) is None


def test_unknown_objects_follow_the_callers_choice():
    assert jsonable([Opaque()]) == ["opaque"]
    assert jsonable([Opaque()], unknown=repr) == ["Opaque()"]

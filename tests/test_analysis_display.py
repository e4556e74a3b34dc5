"""The one display mechanism: short, capped HTML and text whatever the size of what is shown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.display import MAX_CHARS, TEXT_LINES, Display, Displayable, format_bytes, format_value


def _wide(rows: int = 200, columns: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"column_{i}" for i in range(columns)])
    frame.insert(0, "label", ["<b>" + "x" * 200] * rows)  # markup in a cell is shown, never interpreted
    return frame


def test_a_display_of_many_large_tables_stays_under_the_caps():
    display = Display("Results", "trace.h5").fields({"alpha": 0.05, "seed": 0, "unset": None}, "settings")
    for i in range(40):
        display.table(_wide(), f"table {i}", folded=i > 0)
    display.lines("warnings", [f"warning {i}" for i in range(100)])
    html, text = display.to_html(), display.to_text()
    assert len(html) < MAX_CHARS and len(text) < MAX_CHARS
    assert text.count("\n") < TEXT_LINES
    assert "<b>xxx" not in html and "&lt;b&gt;" in html
    assert "unset" not in html  # None values are left out
    assert "200 rows × 31 columns" in html and "first 5 of 200 rows" in html
    assert "more part(s) left out" in html and "more part(s) left out" in text
    assert "<details><summary><b>table 1</b>" in html


def test_a_small_display_shows_every_block():
    display = (Display("Trace", "in memory").fields([("conditions", 3)])
               .table(pd.DataFrame({"group": ["hat", "age"], "delta": [-0.0123456, np.nan]}), "ranking")
               .lines("warnings", [], empty="none"))
    text = display.to_text()
    assert text.splitlines()[0] == "<Trace: in memory>"
    assert "-0.01235" in text and "–" in text and "warnings: none" in text
    assert "left out" not in text and "left out" not in display.to_html()


def test_displayable_gives_both_reprs():
    class Thing(Displayable):
        def _display(self):
            return Display("Thing").text("one sentence")

    assert repr(Thing()) == "<Thing>\none sentence"
    assert Thing()._repr_html_().count("one sentence") == 1


def test_values_are_short():
    assert format_value(np.float64(1234.5678)) == "1235"
    assert format_value(True) == "yes" and format_value(None) == "–" and format_value(pd.NA) == "–"
    assert format_value("y" * 100).endswith("…") and len(format_value("y" * 100)) == 40
    assert format_bytes(999) == "999 B" and format_bytes(1_359_253) == "1.4 MB"

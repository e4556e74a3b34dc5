"""Short displays of results in a notebook and a terminal: the one mechanism every result object uses.

A result object (a trace, the results of an analysis or a study, a written report) describes itself
as a :class:`Display`: a title, then blocks -- key/value fields (settings, provenance highlights),
the head of a table with its shape, a few lines (warnings) -- and :class:`Displayable` turns that
into ``_repr_html_`` (Jupyter, VS Code) and ``__repr__`` (a terminal). Both are capped: a display
shows what a reader needs to decide what to look at next, never a table in full, so it stays
shorter than one screen and than :data:`MAX_CHARS` characters however large the object is. The
full tables stay one attribute away (``results.table(name)``, ``trace.conditions``).

Plain HTML with no script and no stylesheet: it reads the same in a notebook, a saved notebook and
a notebook rendered on a code-hosting site. Torch-free and import-light (pandas only when a table
is shown), so :mod:`mosaic.app` can display its results with it.
"""

from __future__ import annotations

import html
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Display", "Displayable", "MAX_CHARS", "TEXT_LINES", "format_bytes", "format_value"]

MAX_CHARS = 5000  # every display, HTML and text, is shorter than this
TEXT_LINES = 30  # a text display fits one terminal screen
CELL_CHARS = 40  # longer cell values are cut with an ellipsis
FIELD_CHARS = 96  # and longer values of key/value fields
TABLE_ROWS = 5  # rows of a table's head shown by default
TABLE_COLUMNS = 8  # columns shown by default; the others are named in the note
TEXT_WIDTH = 100  # characters per text line
TEXT_CELL = 28  # characters per table cell in text

_ELLIPSIS = "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + _ELLIPSIS


def format_value(value: Any, limit: int = CELL_CHARS) -> str:
    """One value as a short string: floats to 4 significant digits, NaN/None as ``–``, long text cut."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return "–"
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if isinstance(value, (list, tuple, set, frozenset)):
        return _cut(", ".join(format_value(v, limit) for v in value), limit)
    if isinstance(value, Mapping):
        return _cut(", ".join(f"{k}={format_value(v, limit)}" for k, v in value.items()), limit)
    return _cut(str(value), limit)


def format_bytes(n: int | None) -> str:
    """``n`` bytes in the largest unit that keeps the number at least 1 (B, KB, MB, GB; powers of 1000)."""
    if n is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass
class _Block:
    """One part of a display, rendered both ways; ``text`` is a list of lines."""

    html: str
    text: list[str]


@dataclass
class Display:
    """The short description of one object, built block by block and rendered as HTML or text.

    Blocks are kept in the order they are added; a renderer stops adding blocks when the next one
    would pass the size cap and says how many it left out, so the most important blocks go first.
    """

    title: str
    subtitle: str = ""
    blocks: list[_Block] = field(default_factory=list)

    # ------------------------------------------------------------------ building
    def fields(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], caption: str | None = None) -> "Display":
        """Key/value pairs (settings, provenance highlights); ``None`` values are left out."""
        pairs = [(str(k), format_value(v, FIELD_CHARS)) for k, v in (items.items() if isinstance(items, Mapping) else items)
                 if v is not None]
        if not pairs:
            return self
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                       f"{html.escape(v)}</td></tr>" for k, v in pairs)
        head = f"<caption style='text-align:left'>{html.escape(caption)}</caption>" if caption else ""
        width = max(len(k) for k, _ in pairs)
        text = ([f"{caption}:"] if caption else []) + [f"  {k:<{width}}  {v}" for k, v in pairs]
        self.blocks.append(_Block(f"<table>{head}{rows}</table>", text))
        return self

    def table(self, frame, caption: str, *, max_rows: int = TABLE_ROWS, max_columns: int = TABLE_COLUMNS,
              note: str | None = None, folded: bool = False, text_rows: int | None = None) -> "Display":
        """The head of ``frame`` (``max_rows`` rows, ``max_columns`` columns) under ``caption`` with its shape.

        ``folded`` puts it in a ``<details>`` element, open on a click; ``note`` is one line under it
        (a unit, a meaning); ``text_rows`` rows go to the text display (default: ``max_rows``, and
        none for a folded table: its caption and shape only).
        """
        n_rows, n_columns = frame.shape
        shown = frame.iloc[:max_rows, :max_columns]
        hidden = [str(c) for c in frame.columns[max_columns:]]
        shape = f"{n_rows} row{'s' if n_rows != 1 else ''} × {n_columns} column{'s' if n_columns != 1 else ''}"
        notes = [note] if note else []
        if n_rows > max_rows:
            notes.append(f"first {max_rows} of {n_rows} rows")
        if hidden:
            notes.append(_cut(f"{len(hidden)} more column{'s' if len(hidden) > 1 else ''}: {', '.join(hidden)}",
                              2 * CELL_CHARS))
        header = "".join(f"<th>{html.escape(_cut(str(c), CELL_CHARS))}</th>" for c in shown.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
                       for row in shown.itertuples(index=False, name=None))
        label = f"<b>{html.escape(caption)}</b> ({shape})"
        table = f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
        small = f"<br><small>{html.escape('; '.join(notes))}</small>" if notes else ""
        if folded:
            markup = f"<details><summary>{label}</summary>{table}{small}</details>"
        else:
            markup = f"<div>{label}{table}{small}</div>"
        text = [f"{caption} ({shape})"]
        rows = (0 if folded else max_rows) if text_rows is None else text_rows
        if rows and n_rows:
            cells = [[_cut(str(c), TEXT_CELL) for c in shown.columns]]
            cells += [[_cut(format_value(v), TEXT_CELL) for v in row] for row in shown.iloc[:rows].itertuples(index=False, name=None)]
            widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
            text += [_cut("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)), TEXT_WIDTH) for r in cells]
        text += [f"  ({n})" for n in notes]
        self.blocks.append(_Block(markup, text))
        return self

    def lines(self, caption: str, lines: Sequence[str], *, max_lines: int = 5, empty: str | None = None) -> "Display":
        """A short list (warnings, notes): the first ``max_lines`` and how many more there are."""
        if not lines:
            if empty:
                self.blocks.append(_Block(f"<div>{html.escape(caption)}: {html.escape(empty)}</div>",
                                          [f"{caption}: {empty}"]))
            return self
        shown = [_cut(str(line), 2 * CELL_CHARS + 40) for line in lines[:max_lines]]
        more = len(lines) - len(shown)
        items = "".join(f"<li>{html.escape(line)}</li>" for line in shown)
        tail = f"<li>… and {more} more</li>" if more else ""
        markup = f"<div>{html.escape(caption)} ({len(lines)}):<ul style='margin:0'>{items}{tail}</ul></div>"
        text = [f"{caption} ({len(lines)}):"] + [f"  - {line}" for line in shown] + ([f"  … and {more} more"] if more else [])
        self.blocks.append(_Block(markup, text))
        return self

    def text(self, line: str) -> "Display":
        """One sentence."""
        self.blocks.append(_Block(f"<div>{html.escape(line)}</div>", [_cut(line, TEXT_WIDTH)]))
        return self

    # ------------------------------------------------------------------ rendering
    def to_html(self, limit: int = MAX_CHARS) -> str:
        """The display as one ``<div>``, shorter than ``limit`` characters."""
        head = f"<div><b>{html.escape(self.title)}</b>"
        if self.subtitle:
            head += f" <small>{html.escape(_cut(self.subtitle, 3 * CELL_CHARS))}</small>"
        head += "</div>"
        opening, closing = "<div style='font-size:90%'>", "</div>"
        reserve = len(opening) + len(closing) + 80  # room for the "left out" line
        parts, used = [head], len(head)
        for i, block in enumerate(self.blocks):
            if used + len(block.html) > limit - reserve:
                parts.append(f"<div><small>{len(self.blocks) - i} more part(s) left out of this display</small></div>")
                break
            parts.append(block.html)
            used += len(block.html)
        return opening + "".join(parts) + closing

    def to_text(self, limit: int = MAX_CHARS, max_lines: int = TEXT_LINES) -> str:
        """The display as at most ``max_lines`` lines and ``limit`` characters."""
        first = f"<{self.title}" + (f": {_cut(self.subtitle, 3 * CELL_CHARS)}" if self.subtitle else "") + ">"
        lines, used = [first], len(first) + 1
        for i, block in enumerate(self.blocks):
            size = sum(len(line) + 1 for line in block.text)
            if len(lines) + len(block.text) > max_lines - 1 or used + size > limit - 80:
                lines.append(f"({len(self.blocks) - i} more part(s) left out; see _repr_html_ or the attributes)")
                break
            lines += block.text
            used += size
        return "\n".join(lines)


class Displayable:
    """Gives a class ``_repr_html_`` and ``__repr__`` from its ``_display()`` (a :class:`Display`).

    A dataclass that inherits this must say ``@dataclass(repr=False)``, or the dataclass's own
    ``__repr__`` (which prints every field in full) replaces it.
    """

    def _display(self) -> Display:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._display().to_html()

    def __repr__(self) -> str:
        return self._display().to_text()

"""Report columns of an analysis table, from its spec (:mod:`analysis.tables`): which columns, in
what order, under which header."""

from __future__ import annotations

import pandas as pd

from analysis.tables import TableSpec
from reports.document import Column


def spec_columns(spec: TableSpec, frame: pd.DataFrame) -> list[Column]:
    """``spec.shown_first``, then the frame's other columns, hidden ones left out; labels from the spec, and
    its meaning and unit as the header's help text (the HTML tooltip)."""
    columns = []
    for name in spec.display_columns(frame):
        column = spec.column(name)
        if column is None:  # the test column the report adds
            columns.append(Column(name, help=spec.test))
            continue
        help = column.description + (f" [{column.unit}]" if column.unit else "")
        columns.append(Column(name, column.label, help=help))
    return columns

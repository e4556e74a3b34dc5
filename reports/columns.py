"""Report columns of an analysis table, from its spec (:mod:`analysis.tables`): which columns, in
what order, under which header."""

from __future__ import annotations

import pandas as pd

from analysis.tables import TableSpec
from reports.document import Column


def spec_columns(spec: TableSpec, frame: pd.DataFrame) -> list[Column]:
    """``spec.shown_first``, then the frame's other columns, hidden ones left out; labels from the spec."""
    columns = []
    for name in spec.display_columns(frame):
        column = spec.column(name)
        columns.append(Column(name, column.label if column is not None else None))
    return columns

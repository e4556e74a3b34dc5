"""Statistics on mosaic traces: which attribute groups and families does retrieval rely on?

Torch-free by design: it opens any valid trace file and never reaches into a checkpoint.

    >>> import analysis
    >>> trace = analysis.read_trace("trace.h5")      # pandas views of the trace
    >>> results = analysis.analyze(trace, seed=0)    # tidy DataFrames, settings, warnings
"""

from __future__ import annotations

# The specs of the built-in result tables register in analysis.tables.registry (the mechanism, which
# imports none of them) as the package loads, before any method can produce a table.
import analysis.tables.specs  # noqa: F401  (paired, configuration, query GLM)
import analysis.tables.specs_query  # noqa: F401  (query surrogate, decomposition, ranking, trace views)
import analysis.tables.specs_study  # noqa: F401  (analysis.study)
import analysis.tables.specs_audit  # noqa: F401  (the embedding audit)

# Bound eagerly: ``analyze`` shares its name with its module, and a lazily resolved name would be
# shadowed by the submodule as soon as anything imports ``analysis.analyze``. The folders holding
# ``simulate`` and ``study`` are named otherwise (simulation/, studies/) for the same reason.
from analysis.analyze import analyze
from analysis.results import Results
from analysis.simulation.trace import simulate
from analysis.studies.study import StudyResults, study
from analysis.trace import Trace, read_trace

__all__ = ["Results", "StudyResults", "Trace", "analyze", "read_trace", "simulate", "study"]

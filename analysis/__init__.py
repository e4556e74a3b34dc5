"""Statistics on mosaic traces: which attribute groups and families does retrieval rely on?

Torch-free by design: it opens any valid trace file and never reaches into a checkpoint.

    >>> import analysis
    >>> trace = analysis.read_trace("trace.h5")      # pandas views of the trace
    >>> results = analysis.analyze(trace, seed=0)    # tidy DataFrames, settings, warnings
"""

from __future__ import annotations

import importlib

# Public name -> defining module; resolved on first use so that importing one part does not
# pull in the heavier statistics stack.
_EXPORTS = {
    "Trace": "analysis.trace",
    "read_trace": "analysis.trace",
    "simulate": "analysis.simulate",
    "analyze": "analysis.analyze",
    "Results": "analysis.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")

"""Row statuses of every test table: one vocabulary for all methods.

``OK`` rows carry an estimate and a p-value; ``NOT_TESTED`` rows have an estimate but no test
(no discordant pairs, every difference zero, one identity); ``NOT_ESTIMABLE`` rows have neither;
``UNAVAILABLE`` rows name a quantity whose conditions the trace lacks (a decomposition, a study).
Only ``OK`` rows with a finite p enter a multiple-testing family (:func:`analysis.stats.corrections.add_corrections`).
"""

from __future__ import annotations

__all__ = ["OK", "NOT_TESTED", "NOT_ESTIMABLE", "UNAVAILABLE"]

OK, NOT_TESTED, NOT_ESTIMABLE, UNAVAILABLE = "ok", "not tested", "not estimable", "unavailable"

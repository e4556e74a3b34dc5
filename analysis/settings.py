"""The knobs of one analysis run, as data.

:class:`AnalysisSettings` is what :func:`analysis.analyze` builds from its keyword arguments and
hands to every method (``method(trace, settings) -> dict[str, DataFrame]``). It is recorded in
:class:`analysis.results.Results` (``settings``) so that a report can write its methods section
from it and a reader can rerun the analysis exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from mosaic.errors import MosaicError

__all__ = ["AnalysisSettings", "COMPARISONS", "MethodNotApplicable"]

# Condition kinds compared against the baseline, each in its own family of tests.
COMPARISONS = ("drop", "counterfactual")


class MethodNotApplicable(Exception):
    """A method cannot run on this trace at all (e.g. no ``subset`` conditions for a
    configuration-level model). :func:`analysis.analyze` records the message as a warning and
    carries on with the other methods."""


@dataclass(frozen=True)
class AnalysisSettings:
    """Settings shared by every analysis method.

    Attributes
    ----------
    alpha : significance level for ``reject_*`` columns and the ``(1 - alpha)`` intervals of
        tests; bootstrap intervals use ``ci_level``.
    n_bootstrap : identity-cluster bootstrap resamples (CIs of ΔmAP and of family effects).
    n_permutations : sign-flip permutations over identities (identity-level paired test); with
        few identities every sign pattern is enumerated instead.
    seed : one seed for every resampling and every model fit; the same seed gives the same numbers.
    ci_level : coverage of bootstrap confidence intervals.
    baseline : the condition every ``drop`` / ``counterfactual`` condition is compared with.
    comparisons : which condition kinds are compared with the baseline.
    methods : names of the methods to run (see ``analysis.analyze.METHODS``); ``None`` runs all.
    options : method-specific knobs, ``{method: {option: value}}``, e.g.
        ``{"explanatory": {"n_folds": 5}}``; methods read their own entry and ignore the rest.
    """

    alpha: float = 0.05
    n_bootstrap: int = 1000
    n_permutations: int = 2000
    seed: int = 0
    ci_level: float = 0.95
    baseline: str = "oracle"
    comparisons: tuple[str, ...] = COMPARISONS
    methods: tuple[str, ...] | None = None
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise MosaicError(f"alpha must lie strictly between 0 and 1, got {self.alpha}: use e.g. 0.05")
        if not 0 < self.ci_level < 1:
            raise MosaicError(f"ci_level must lie strictly between 0 and 1, got {self.ci_level}: use e.g. 0.95")
        if int(self.n_bootstrap) < 100:
            raise MosaicError(f"n_bootstrap={self.n_bootstrap} is too few for a percentile interval: use at least 100")
        if int(self.n_permutations) < 100:
            raise MosaicError(f"n_permutations={self.n_permutations} is too few for a p-value: use at least 100")
        unknown = sorted(set(self.comparisons) - set(COMPARISONS))
        if unknown:
            raise MosaicError(f"unknown comparisons {unknown}: use any of {list(COMPARISONS)}")
        object.__setattr__(self, "n_bootstrap", int(self.n_bootstrap))
        object.__setattr__(self, "n_permutations", int(self.n_permutations))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "comparisons", tuple(self.comparisons))
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))

    def option(self, method: str, name: str, default: Any = None) -> Any:
        """A method-specific option, or ``default`` when the user did not set it."""
        return dict(self.options.get(method, {})).get(name, default)

    def options_for(self, method: str, option_class: type) -> dict[str, Any]:
        """The options the user set for ``method``, checked against the fields of its options dataclass."""
        given = dict(self.options.get(method, {}))
        known = {f.name for f in fields(option_class)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise MosaicError(f"unknown {method} option(s) {unknown}: use any of {sorted(known)}")
        return given

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = list(self.comparisons)
        out["methods"] = None if self.methods is None else list(self.methods)
        out["options"] = {k: dict(v) for k, v in self.options.items()}
        return out

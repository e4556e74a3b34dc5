"""The knobs of one analysis run, as data.

:class:`AnalysisSettings` is what :func:`analysis.analyze` builds from its keyword arguments and
hands to every method (``method(trace, settings) -> dict[str, DataFrame]``). It is recorded in
:class:`analysis.results.Results` (``settings``) so that a report can write its methods section
from it and a reader can rerun the analysis exactly.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from mosaic.core.errors import MosaicError
from mosaic.core.settings import check_bounds, check_choice, check_fields, coerce

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
    alpha : significance level of the decisions (``reject_*`` columns); it sets no interval.
    n_bootstrap : identity-cluster bootstrap resamples (CIs of ΔmAP and of family effects).
    n_permutations : sign-flip permutations over identities (identity-level paired test); with
        few identities every sign pattern is enumerated instead.
    seed : one seed for every resampling and every model fit; the same seed gives the same numbers.
    ci_level : coverage of every confidence interval (bootstrap, exact, Wald, t and GLM alike).
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

    bounds: ClassVar[dict[str, tuple]] = {"alpha": (0, 1, "()"), "ci_level": (0, 1, "()"),
                                          "n_bootstrap": (100, None), "n_permutations": (100, None)}
    choices: ClassVar[dict[str, Any]] = {"comparisons": COMPARISONS}

    def __post_init__(self) -> None:
        check_fields(self)  # types, bounds and choices (mosaic.core.settings)

    def option(self, method: str, name: str, default: Any = None) -> Any:
        """A method-specific option, or ``default`` when the user did not set it."""
        return dict(self.options.get(method, {})).get(name, default)

    def options_for(self, method: str, option_class: type) -> dict[str, Any]:
        """The options the user set for ``method``, checked against its options dataclass.

        Every name must be a field, and every value must match the field's declared type, the
        class's ``bounds`` and ``choices`` (:mod:`mosaic.core.settings`, the one validation engine of
        every settings object); see :func:`check_option`. Sequence-typed options come back as tuples.
        """
        given = dict(self.options.get(method, {}))
        known = [f.name for f in fields(option_class)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise MosaicError(f"unknown {method} option(s) {unknown}: use any of {sorted(known)}")
        hints = typing.get_type_hints(option_class)
        bounds = getattr(option_class, "bounds", {})
        choices = getattr(option_class, "choices", {})
        return {name: check_option(method, name, value, hints[name], bounds.get(name), choices.get(name))
                for name, value in given.items()}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = list(self.comparisons)
        out["methods"] = None if self.methods is None else list(self.methods)
        out["options"] = {k: dict(v) for k, v in self.options.items()}
        return out


def check_option(method: str, name: str, value: Any, annotation: Any, bounds: tuple | None = None,
                 choices: Any = None) -> Any:
    """``value`` of option ``name`` checked against its declared type, bounds and choices; a one-line error otherwise.

    The message names the option, the constraint and the value, so ``{"rf_n_estimators": "20"}``
    stops before any model is built instead of surfacing as the estimator's own error.
    """
    key = f"{method} option {name}"
    converted = coerce(value, annotation, key)
    if bounds is not None:
        for item in converted if isinstance(converted, tuple) else (converted,):
            check_bounds(item, bounds, key)
    if choices is not None:
        check_choice(converted, choices, key)
    return converted

"""The knobs of one analysis run, as data.

:class:`AnalysisSettings` is what :func:`analysis.analyze` builds from its keyword arguments and
hands to every method (``method(trace, settings) -> dict[str, DataFrame]``). It is recorded in
:class:`analysis.results.Results` (``settings``) so that a report can write its methods section
from it and a reader can rerun the analysis exactly.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
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
        """The options the user set for ``method``, checked against its options dataclass.

        Every name must be a field, and every value must match the field's declared type and the
        class's ``bounds`` (``{field: (low, high)}``, ``None`` = open); see :func:`check_option`.
        Sequence-typed options come back as tuples.
        """
        given = dict(self.options.get(method, {}))
        known = {f.name for f in fields(option_class)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise MosaicError(f"unknown {method} option(s) {unknown}: use any of {sorted(known)}")
        hints = typing.get_type_hints(option_class)
        bounds = getattr(option_class, "bounds", {})
        return {name: check_option(method, name, value, hints[name], bounds.get(name)) for name, value in given.items()}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = list(self.comparisons)
        out["methods"] = None if self.methods is None else list(self.methods)
        out["options"] = {k: dict(v) for k, v in self.options.items()}
        return out


def _matches(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``annotation`` (int, float, bool, str, tuple[X, ...], unions); the value as stored."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            ok, converted = _matches(value, member)
            if ok:
                return True, converted
        return False, value
    if origin is tuple:
        (item, *_rest) = typing.get_args(annotation)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return False, value
        converted = [_matches(v, item) for v in items]
        return all(ok for ok, _ in converted), tuple(v for _, v in converted)
    if annotation is bool:
        return isinstance(value, (bool,)), value
    if isinstance(value, bool):
        return False, value
    if annotation is int:
        return isinstance(value, Integral), int(value) if isinstance(value, Integral) else value
    if annotation is float:
        return isinstance(value, Real), float(value) if isinstance(value, Real) else value
    if annotation is str:
        return isinstance(value, str), value
    return True, value


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(annotation)[0])}"
    if typing.get_args(annotation) and origin is not tuple:
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation, str(annotation))


def check_option(method: str, name: str, value: Any, annotation: Any, bounds: tuple | None = None) -> Any:
    """``value`` of option ``name`` checked against its declared type and bounds; a one-line error otherwise.

    The message names the option, the constraint and the value, so ``{"rf_n_estimators": "20"}``
    stops before any model is built instead of surfacing as the estimator's own error.
    """
    ok, converted = _matches(value, annotation)
    if not ok:
        raise MosaicError(
            f"{method} option {name} must be {_describe(annotation)}, got {value!r} ({type(value).__name__})"
        )
    if bounds is not None and isinstance(converted, Real) and not isinstance(converted, bool):
        low, high = bounds
        if (low is not None and converted < low) or (high is not None and converted > high):
            span = f"at least {low}" if high is None else f"at most {high}" if low is None else f"in [{low}, {high}]"
            raise MosaicError(f"{method} option {name} must be {span}, got {value!r}")
    return converted

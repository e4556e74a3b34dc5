"""One way to validate every settings object: types, ranges, choices and unknown keys.

Torch-free; used by the training config (:mod:`mosaic.train.config`), the model config
(:class:`mosaic.model.ModelConfig`), the world config (:class:`mosaic.synth.WorldConfig`), the
trace settings (:class:`mosaic.tracing.settings.TraceSettings`) and the analysis settings and method options
(:mod:`analysis.settings`). A settings class is a dataclass whose annotations are the types; it
declares the rest as data, in scikit-learn's spirit (``_parameter_constraints``)::

    @dataclass
    class Options:
        n_folds: int = 5
        learning_rate: float = 0.05
        missing: str = "level"

        bounds: ClassVar[dict] = {"n_folds": (2, None), "learning_rate": (0, 1, "(]")}
        choices: ClassVar[dict] = {"missing": ("level", "drop")}   # or a callable returning a registry

        def __post_init__(self):
            check_fields(self)

``bounds`` maps a field to ``(low, high)`` (``None`` = open; closed unless a third item says
``"[)"``, ``"(]"`` or ``"()"``); ``choices`` maps a field to the allowed values, or to a
function returning them (a registry, read when the check runs, so that entries registered from
user code count). Every failure is a one-line :class:`MosaicError` that names the key, the
constraint and the value: ``optim.lr must be a number, got 'fast'``, ``explanatory option
learning_rate must be at least 0, got -1``, ``unknown key 'lr_' in optim: did you mean 'lr'?``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from numbers import Integral, Real
from typing import Any, Callable, Literal, Mapping, Sequence

from mosaic.core.errors import MosaicError

__all__ = ["build", "check_bounds", "check_choice", "check_fields", "coerce", "field_names", "field_types",
           "type_name", "unknown_key_message"]


# ----------------------------------------------------------------------------- fields

def field_names(cls: type) -> list[str]:
    """The settable fields of a settings dataclass (private ``_`` fields excluded)."""
    return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_") and f.init]


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unknown_key_message(key: str, valid: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"unknown key {key!r} in {where}: {hint}"


# ----------------------------------------------------------------------------- types

def type_name(tp: Any) -> str:
    """How a type reads in an error message."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"a list of {type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict or origin is Mapping:
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or a MosaicError naming ``key``, the type and the value.

    Lists become tuples where the type says tuple, a lone string is a one-item list of strings, an
    integral float is an integer, and a numeric string is a float (YAML 1.1 reads ``3e-4`` as a
    string). Nothing else is converted.
    """

    def fail() -> MosaicError:
        return MosaicError(f"{key} must be {type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except MosaicError:
                continue
        raise fail()
    if origin is Literal:
        if value in args:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MosaicError(f"{key} must be {type_name(tp)}, got {value!r}{hint}")
    if origin in (tuple, list):
        item = next((a for a in args if a is not Ellipsis), Any)
        if isinstance(value, str) and item is str and not (origin is tuple and args and args[-1] is not Ellipsis):
            value = [value]  # a lone name where a list of names is expected
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise fail()
        try:
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise MosaicError(f"{key} must have {len(args)} values, got {len(value)}: {value!r}")
                return tuple(coerce(v, a, key) for v, a in zip(value, args))
            out = [coerce(v, item, key) for v in value]
        except MosaicError as exc:
            if "must have" in str(exc):
                raise
            raise fail() from None
        return tuple(out) if origin is tuple else out
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise fail()
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        raise fail()
    if tp is float:
        if isinstance(value, Real) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise fail() from None
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if isinstance(tp, type) and not isinstance(value, tp):
        raise fail()
    return value


# ----------------------------------------------------------------------------- ranges and choices

def check_bounds(value: Any, bounds: tuple, key: str) -> None:
    """``low <= value <= high`` (or as ``bounds[2]`` closes the interval); numbers only."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return
    low, high, *closed = bounds
    closed = closed[0] if closed else "[]"
    too_low = low is not None and (value < low if closed[0] == "[" else value <= low)
    too_high = high is not None and (value > high if closed[1] == "]" else value >= high)
    if not (too_low or too_high):
        return
    if high is None:
        span = f"be at least {low}" if closed[0] == "[" else f"be greater than {low}"
    elif low is None:
        span = f"be at most {high}" if closed[1] == "]" else f"be less than {high}"
    elif closed == "()":
        span = f"lie strictly between {low} and {high}"
    else:
        span = f"be in {closed[0]}{low}, {high}{closed[1]}"
    raise MosaicError(f"{key} must {span}, got {value!r}")


def check_choice(value: Any, choices: Any, key: str) -> None:
    """``value`` (or each item of a tuple value) must be one of ``choices`` (a collection, or a callable returning one)."""
    allowed = list(choices() if callable(choices) else choices)
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if item is None or item in allowed:
            continue
        close = difflib.get_close_matches(str(item), [str(a) for a in allowed], n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MosaicError(f"{key} must be one of {allowed}, got {item!r}{hint}")


# ----------------------------------------------------------------------------- whole objects

def check_fields(obj: Any, prefix: str = "", *, skip: Sequence[str] = ()) -> None:
    """Validate a settings dataclass instance in place: each field's type, then its bounds and choices.

    Call it from ``__post_init__``; converted values (lists to tuples, integral floats to ints)
    are stored back, frozen dataclasses included. ``prefix`` goes before every key in messages
    (``"model."``, ``"explanatory option "``).
    """
    cls = type(obj)
    hints = field_types(cls)
    bounds: Mapping[str, tuple] = getattr(cls, "bounds", {}) or {}
    choices: Mapping[str, Any] = getattr(cls, "choices", {}) or {}
    for name in field_names(cls):
        if name in skip:
            continue
        key = f"{prefix}{name}"
        value = coerce(getattr(obj, name), hints[name], key)
        if name in bounds:
            for item in value if isinstance(value, tuple) else (value,):
                check_bounds(item, bounds[name], key)
        if name in choices:
            check_choice(value, choices[name], key)
        object.__setattr__(obj, name, value)


def build(cls: type, data: Any, prefix: str = "", *, where: str | None = None,
          nested: Callable[[type, str, Any], type | None] | None = None) -> Any:
    """An instance of the settings dataclass ``cls`` from a mapping: unknown keys, types, then ``cls``'s own checks.

    ``nested(cls, name, type)`` returns the settings class of a field that is a section (default:
    fields whose type is a dataclass); sections are built recursively with ``prefix + name + "."``.
    """
    where = where or prefix.rstrip(". ") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MosaicError(f"{where} must be a mapping of keys, got {type(data).__name__}")
    names = field_names(cls)
    hints = field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise MosaicError(unknown_key_message(str(key), names, where))
        sub = nested(cls, key, hints[key]) if nested is not None else None
        if sub is None and dataclasses.is_dataclass(hints[key]):
            sub = hints[key]
        if sub is not None:
            kwargs[key] = build(sub, value, f"{prefix}{key}.", nested=nested)
        else:
            kwargs[key] = coerce(value, hints[key], f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except MosaicError:
        raise
    except (TypeError, ValueError) as exc:
        raise MosaicError(f"invalid {where}: {exc}") from None

"""How the raw fields of a Lin et al. attribute file become the states of a schema's groups.

The mapping is data, kept in the schema YAML beside each group (``source:``) plus one
``attribute_file:`` block at the top; :func:`mosaic.core.schema.load_schema` ignores both. Two kinds
of source exist:

``{field: gender, codes: {1: male, 2: female}}``
    one raw field whose integer code names the state.
``{one_hot: {upblack: black, ...}, pooled: {uppurple: other}, none_marked: other, multi_marked: first}``
    several 1/2 (no/yes) fields, one per state; ``pooled`` fields are folded into another
    state; ``none_marked`` is the state of an identity with no field marked; ``multi_marked``
    names the rule for identities with several states marked (see ``MULTI_MARKED_RULES``).

Raw code 0 always means "not annotated" and becomes ``MISSING``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, AttributeGroup, AttributeSchema, read_schema_document, shipped_schemas

RAW_MISSING = 0  # the Lin et al. files code "not annotated" as 0
RAW_NO, RAW_YES = 1, 2  # one-hot colour fields


# ------------------------------------------------------------------- multi-marked rules
def _first_in_state_order(marked: np.ndarray) -> np.ndarray:
    return marked.argmax(axis=1)


def _missing_when_ambiguous(marked: np.ndarray) -> np.ndarray:
    return np.full(marked.shape[0], MISSING)


# name -> resolver of rows with several states marked: (n, n_states) bool -> (n,) state codes
MULTI_MARKED_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "first": _first_in_state_order,
    "missing": _missing_when_ambiguous,
}


@dataclass
class Decoded:
    """State codes of one group for the identities of one struct, and what decoding met."""

    codes: np.ndarray  # (n_ids,) int16 state code or MISSING
    missing: np.ndarray  # (n_ids,) bool: raw 0, not annotated
    none_marked: np.ndarray  # (n_ids,) bool: one-hot group with no field marked
    multi_marked: np.ndarray  # (n_ids,) bool: several states marked, resolved by the rule
    marked: np.ndarray  # (n_ids, n_states) bool: states marked in the raw file
    pooled: dict[str, int] = field(default_factory=dict)  # pooled field -> ids marking it


def _resolve(marked: np.ndarray, missing: np.ndarray, fallback: int, rule: str) -> Decoded:
    n_marked = marked.sum(axis=1)
    none = (n_marked == 0) & ~missing
    multi = n_marked > 1
    codes = np.full(marked.shape[0], MISSING, dtype=np.int16)
    single = n_marked == 1
    codes[single] = marked[single].argmax(axis=1)
    codes[none] = fallback
    if multi.any():
        codes[multi] = MULTI_MARKED_RULES[rule](marked[multi])
    return Decoded(codes=codes, missing=missing & (n_marked == 0), none_marked=none, multi_marked=multi, marked=marked)


def _check_codes(group: str, name: str, values: np.ndarray, allowed: set[int]) -> None:
    bad = sorted(set(np.unique(values).tolist()) - allowed - {RAW_MISSING})
    if bad:
        raise MosaicError(
            f"attribute field {name!r} (group {group!r}) holds codes {bad} that the schema does not map: "
            f"expected {sorted(allowed)} (0 = missing); fix the file or the group's source in the schema"
        )


@dataclass(frozen=True)
class CodedSource:
    """One raw field whose integer code names the state (``codes``: raw code -> state)."""

    field: str
    codes: Mapping[int, str]

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def states_reached(self) -> set[str]:
        return set(self.codes.values())

    def decode(self, raw: Mapping[str, np.ndarray], group: AttributeGroup) -> Decoded:
        values = raw[self.field].astype(np.int64)
        _check_codes(group.name, self.field, values, set(self.codes))
        marked = np.zeros((values.size, len(group.states)), dtype=bool)
        for code, state in self.codes.items():
            marked[values == code, group.code(state)] = True
        return _resolve(marked, values == RAW_MISSING, MISSING, "missing")

    @classmethod
    def from_spec(cls, group: str, spec: Mapping[str, Any]) -> "CodedSource":
        codes = spec.get("codes")
        if not isinstance(codes, Mapping) or not codes:
            raise MosaicError(f"group {group!r}: source.codes must map raw codes to states, e.g. {{1: male, 2: female}}")
        try:
            parsed = {int(k): str(v) for k, v in codes.items()}
        except (TypeError, ValueError):
            raise MosaicError(f"group {group!r}: source.codes keys must be integers, got {list(codes)}") from None
        if RAW_MISSING in parsed:
            raise MosaicError(f"group {group!r}: raw code 0 means 'not annotated' and cannot name a state")
        return cls(field=str(spec["field"]), codes=parsed)


@dataclass(frozen=True)
class OneHotSource:
    """One 1/2 (no/yes) field per state, as the Lin et al. colour fields."""

    fields_to_states: Mapping[str, str]
    pooled: Mapping[str, str] = field(default_factory=dict)
    none_marked: str | None = None
    multi_marked: str = "first"

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.fields_to_states, *self.pooled)

    def states_reached(self) -> set[str]:
        reached = set(self.fields_to_states.values()) | set(self.pooled.values())
        return reached | ({self.none_marked} if self.none_marked else set())

    def decode(self, raw: Mapping[str, np.ndarray], group: AttributeGroup) -> Decoded:
        n = raw[self.fields[0]].size
        marked = np.zeros((n, len(group.states)), dtype=bool)
        any_missing = np.zeros(n, dtype=bool)
        for name, state in {**self.fields_to_states, **self.pooled}.items():
            values = raw[name].astype(np.int64)
            _check_codes(group.name, name, values, {RAW_NO, RAW_YES})
            marked[:, group.code(state)] |= values == RAW_YES
            any_missing |= values == RAW_MISSING
        fallback = group.code(self.none_marked) if self.none_marked else MISSING
        # an identity with nothing marked wears an unlisted colour only if every field says "no";
        # with a field not annotated it is missing instead (_resolve keeps those MISSING)
        decoded = _resolve(marked, any_missing, fallback, self.multi_marked)
        decoded.pooled = {name: int((raw[name] == RAW_YES).sum()) for name in self.pooled}
        return decoded

    @classmethod
    def from_spec(cls, group: str, spec: Mapping[str, Any]) -> "OneHotSource":
        one_hot, pooled = spec.get("one_hot"), spec.get("pooled", {}) or {}
        if not isinstance(one_hot, Mapping) or not one_hot or not isinstance(pooled, Mapping):
            raise MosaicError(f"group {group!r}: source.one_hot (and source.pooled) must map raw field names to states")
        rule = str(spec.get("multi_marked", "first"))
        if rule not in MULTI_MARKED_RULES:
            raise MosaicError(
                f"group {group!r}: unknown multi_marked rule {rule!r}: use one of {sorted(MULTI_MARKED_RULES)}"
            )
        none = spec.get("none_marked")
        return cls(
            fields_to_states={str(k): str(v) for k, v in one_hot.items()},
            pooled={str(k): str(v) for k, v in pooled.items()},
            none_marked=None if none is None else str(none),
            multi_marked=rule,
        )


Source = CodedSource | OneHotSource

# key that identifies a source kind in the YAML -> parser
SOURCE_KINDS: dict[str, Callable[[str, Mapping[str, Any]], Source]] = {
    "field": CodedSource.from_spec,
    "one_hot": OneHotSource.from_spec,
}


@dataclass(frozen=True)
class AttributeFileSpec:
    """Where a schema's annotations live in a Lin et al. file (the ``attribute_file:`` block)."""

    key: str  # top-level MATLAB variable, e.g. market_attribute
    filename: str  # conventional file name, looked for beside the images
    ids: str = "image_index"  # field holding the identity labels
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "query": "test", "gallery": "test"})
    url: str = ""

    @property
    def structs(self) -> tuple[str, ...]:
        """The struct names, in first-use order (``train``, ``test``)."""
        return tuple(dict.fromkeys(self.splits.values()))

    @classmethod
    def from_spec(cls, schema: str, spec: Any) -> "AttributeFileSpec":
        if not isinstance(spec, Mapping) or "key" not in spec:
            raise MosaicError(f"schema {schema!r}: attribute_file needs at least 'key' (the MATLAB variable name)")
        splits = dict(spec.get("splits") or {"train": "train", "query": "test", "gallery": "test"})
        return cls(
            key=str(spec["key"]),
            filename=str(spec.get("filename", f"{spec['key']}.mat")),
            ids=str(spec.get("ids", "image_index")),
            splits={str(k): str(v) for k, v in splits.items()},
            url=str(spec.get("url", "")),
        )


@dataclass(frozen=True)
class AttributeMapping:
    """A schema plus the recipe that fills its groups from a Lin et al. attribute file."""

    schema: AttributeSchema
    file: AttributeFileSpec
    sources: Mapping[str, Source]  # group name -> source, in schema order

    @property
    def fields(self) -> tuple[str, ...]:
        """Every raw field the recipe reads, ids excluded."""
        return tuple(f for s in self.sources.values() for f in s.fields)

    def decode(self, raw: Mapping[str, np.ndarray]) -> dict[str, Decoded]:
        return {g: src.decode(raw, self.schema.group(g)) for g, src in self.sources.items()}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> "AttributeMapping":
        schema = AttributeSchema.from_dict(doc)
        if "attribute_file" not in doc:
            raise MosaicError(
                f"schema {schema.name!r} says nothing about attribute files: add an 'attribute_file' block and a "
                "'source' per group (see mosaic/core/schemas/market1501.yaml), or use a manifest"
            )
        spec = AttributeFileSpec.from_spec(schema.name, doc["attribute_file"])
        sources: dict[str, Source] = {}
        for entry in doc["groups"]:
            name = str(entry["name"])
            sources[name] = _parse_source(name, entry.get("source"))
            _check_reachable(schema.group(name), sources[name])
        return cls(schema=schema, file=spec, sources=sources)


def _parse_source(group: str, spec: Any) -> Source:
    if not isinstance(spec, Mapping):
        raise MosaicError(f"group {group!r} has no 'source' entry: say which raw field(s) fill it")
    kinds = [k for k in SOURCE_KINDS if k in spec]
    if len(kinds) != 1:
        raise MosaicError(f"group {group!r}: source must have exactly one of {list(SOURCE_KINDS)}, got {list(spec)}")
    return SOURCE_KINDS[kinds[0]](group, spec)


def _check_reachable(group: AttributeGroup, source: Source) -> None:
    reached = source.states_reached()
    unknown = sorted(reached - set(group.states))
    if unknown:
        raise MosaicError(f"group {group.name!r}: source names states {unknown} that are not in its states {list(group.states)}")
    unreachable = [s for s in group.states if s not in reached]
    if unreachable:
        raise MosaicError(
            f"group {group.name!r}: states {unreachable} are filled by no raw field: map a field to them or drop them"
        )


def load_mapping(source: str | Path | AttributeSchema) -> AttributeMapping:
    """The attribute-file mapping of a shipped schema name, a schema YAML file, or a schema object.

    A schema object carries no mapping, so its name must be a shipped schema with the same
    groups and states (same fingerprint).
    """
    if isinstance(source, AttributeSchema):
        if source.name not in shipped_schemas():
            raise MosaicError(
                f"schema {source.name!r} carries no attribute-file mapping: pass its YAML file (with 'source' entries) instead"
            )
        mapping = load_mapping(source.name)
        if mapping.schema.fingerprint() != source.fingerprint():
            raise MosaicError(
                f"schema {source.name!r} differs from the shipped one of that name: pass its YAML file with 'source' entries"
            )
        return mapping
    if isinstance(source, str) and source in _shipped_mappings() and not Path(source).exists():
        return _shipped_mappings()[source]  # parsed once per process
    return AttributeMapping.from_document(read_schema_document(source))


def shipped_mappings() -> dict[str, AttributeMapping]:
    """Shipped schema name -> mapping, for every shipped schema that describes an attribute file."""
    return dict(_shipped_mappings())


@functools.lru_cache(maxsize=1)
def _shipped_mappings() -> dict[str, AttributeMapping]:
    out = {}
    for name in shipped_schemas():
        doc = read_schema_document(name)
        if "attribute_file" in doc:
            out[name] = AttributeMapping.from_document(doc)
    return out

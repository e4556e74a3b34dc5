"""Attribute schemas as data: which attribute groups exist, their states, their family.

A group (``upcolour``) is the unit the analysis ranks; each of its states (``red``) gets one
LoRA expert. Families group the groups for the intrinsic-versus-extrinsic comparison. The
shipped schemas live in ``mosaic/core/schemas/*.yaml``; a custom dataset brings its own file in the
same format. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import yaml

from mosaic.core.errors import MosaicError
from mosaic.core.shipped import shipped_names, shipped_path

FAMILIES = ("intrinsic", "extrinsic-colour", "extrinsic-shape", "extrinsic-accessory")
MISSING = -1  # state code of an image whose group is not annotated (0 in the Lin et al. files)
# routing code (never an annotation): route the group by its fixed gates, each of its experts
# weighted by its state's share among the training identities (mosaic.conditions.state_shares)
FIXED = -2


@dataclass(frozen=True)
class AttributeGroup:
    name: str
    family: str
    states: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise MosaicError(
                f"attribute group {self.name!r} has unknown family {self.family!r}: use one of {', '.join(FAMILIES)}"
            )
        if len(self.states) < 2:
            raise MosaicError(f"attribute group {self.name!r} needs at least two states, got {list(self.states)}")
        if len(set(self.states)) != len(self.states):
            raise MosaicError(f"attribute group {self.name!r} lists a state twice: {list(self.states)}")

    @property
    def coarse_family(self) -> str:
        """``intrinsic`` or ``extrinsic``."""
        return self.family.split("-")[0]

    def code(self, state: str) -> int:
        try:
            return self.states.index(state)
        except ValueError:
            raise MosaicError(
                f"{state!r} is not a state of group {self.name!r}: expected one of {list(self.states)}"
            ) from None


def _state_names(group: Any, states: Any) -> tuple[str, ...]:
    # YAML 1.1 reads unquoted no/yes/on/off as booleans, which would silently become the
    # states "False"/"True"; a list given as one string would become its characters.
    if isinstance(states, (str, bytes)) or not isinstance(states, (list, tuple)):
        raise MosaicError(f"attribute group {group!r}: states must be a list, got {states!r}")
    if any(isinstance(s, bool) for s in states):
        raise MosaicError(
            f"attribute group {group!r} has a state that YAML read as a boolean: quote it, e.g. states: [\"no\", \"yes\"]"
        )
    return tuple(str(s) for s in states)


@dataclass(frozen=True)
class AttributeSchema:
    name: str
    groups: tuple[AttributeGroup, ...]
    description: str = ""
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise MosaicError(f"attribute schema {self.name!r} lists a group twice: {names}")
        self._index.update({g.name: i for i, g in enumerate(self.groups)})

    # ----------------------------------------------------------------- groups
    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def group(self, name: str) -> AttributeGroup:
        return self.groups[self.group_index(name)]

    def group_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise MosaicError(
                f"unknown attribute group {name!r} in schema {self.name!r}: expected one of {list(self.group_names)}"
            ) from None

    @property
    def families(self) -> dict[str, tuple[str, ...]]:
        """Family name → group names, for the families that have at least one group."""
        out: dict[str, list[str]] = {}
        for g in self.groups:
            out.setdefault(g.family, []).append(g.name)
        return {f: tuple(out[f]) for f in FAMILIES if f in out}

    # ---------------------------------------------------------------- experts
    @cached_property
    def experts(self) -> tuple[tuple[str, str], ...]:
        """One ``(group, state)`` per expert, grouped by group in schema order."""
        return tuple((g.name, s) for g in self.groups for s in g.states)

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    @cached_property
    def expert_offsets(self) -> tuple[int, ...]:
        """Index of each group's first expert; group ``i`` owns ``offsets[i] : offsets[i] + n_states``."""
        offsets, start = [], 0
        for g in self.groups:
            offsets.append(start)
            start += len(g.states)
        return tuple(offsets)

    def expert_slice(self, group: str) -> slice:
        i = self.group_index(group)
        start = self.expert_offsets[i]
        return slice(start, start + len(self.groups[i].states))

    @property
    def expert_labels(self) -> tuple[str, ...]:
        """``"group=state"`` per expert."""
        return tuple(f"{g}={s}" for g, s in self.experts)

    # ----------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "groups": [
                {"name": g.name, "family": g.family, "states": list(g.states), "description": g.description}
                for g in self.groups
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AttributeSchema":
        try:
            groups = tuple(
                AttributeGroup(
                    name=str(g["name"]),
                    family=str(g["family"]),
                    states=_state_names(g["name"], g["states"]),
                    description=str(g.get("description", "")),
                )
                for g in data["groups"]
            )
            return cls(name=str(data["name"]), groups=groups, description=str(data.get("description", "")))
        except (KeyError, TypeError) as exc:
            raise MosaicError(
                f"malformed attribute schema: missing or wrong field {exc}; each group needs name, family and states"
            ) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "AttributeSchema":
        return cls.from_dict(json.loads(text))

    def fingerprint(self) -> str:
        """Short hash of groups, states and families; equal fingerprints route experts identically."""
        core = [[g.name, g.family, list(g.states)] for g in self.groups]
        return hashlib.sha256(json.dumps(core).encode()).hexdigest()[:16]


def shipped_schemas() -> list[str]:
    """Names of the schemas shipped in ``mosaic/core/schemas`` (``dukemtmc``, ``market1501``)."""
    return shipped_names("mosaic.core.schemas")


def read_schema_document(source: str | Path) -> dict[str, Any]:
    """The parsed YAML/JSON mapping behind a schema, extra keys included.

    ``source`` is a shipped name (``market1501``) or a file. Readers that keep more than the
    schema in the same file (``mosaic.data`` keeps the attribute-file mapping under each group's
    ``source`` key) start from this; :func:`load_schema` keeps only the schema proper.
    """
    path = Path(source)
    if path.suffix in {".yaml", ".yml", ".json"} or path.exists():
        if not path.is_file():
            raise MosaicError(f"attribute schema file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    else:
        shipped = shipped_path("mosaic.core.schemas", str(source))
        if shipped is None:
            raise MosaicError(
                f"no shipped attribute schema named {source!r}: use one of {shipped_schemas()} or a YAML file"
            )
        text = shipped.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).replace("\n", " ")
        raise MosaicError(f"attribute schema {source} is not valid YAML: {problem}") from None
    if not isinstance(data, Mapping):
        raise MosaicError(f"attribute schema {source} must be a mapping with 'name' and 'groups'")
    return dict(data)


def load_schema(source: str | Path) -> AttributeSchema:
    """Load a schema by shipped name (``market1501``, ``dukemtmc``) or from a YAML/JSON file."""
    return AttributeSchema.from_dict(read_schema_document(source))

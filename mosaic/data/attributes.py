"""Reader of the Lin et al. (Pattern Recognition 2019) identity-level attribute files.

``market_attribute.mat`` / ``duke_attribute.mat`` hold one top-level MATLAB struct with a
``train`` and a ``test`` struct, each holding one ``uint8 (1, N_ids)`` array per raw attribute
and ``image_index`` (4-character identity labels). The field order differs between the two
structs, so every field is read by name. How raw fields become group states is data: see
:mod:`mosaic.data.mapping` and the ``source`` entries of the schema YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from mosaic.data.dataset import Finding
from mosaic.data.mapping import AttributeMapping, Decoded, load_mapping, shipped_mappings
from mosaic.core.errors import MosaicError
from mosaic.core.schema import MISSING, AttributeSchema


@dataclass
class AttributeTable:
    """The identity-level annotations of one attribute file, decoded into schema states.

    ``states[struct]`` and ``raw[struct]`` are DataFrames indexed by ``pid`` (int64), one per
    struct of the file (``train``, ``test``): ``states`` has one int16 column per schema group
    (state code, ``-1`` = missing), ``raw`` the untouched uint8 fields by their file names.
    """

    dataset: str
    path: Path
    mapping: AttributeMapping
    states: dict[str, pd.DataFrame]
    raw: dict[str, pd.DataFrame]
    findings: list[Finding] = field(default_factory=list)

    @property
    def schema(self) -> AttributeSchema:
        return self.mapping.schema

    def struct_for(self, split: str) -> str:
        """Name of the struct that annotates the images of ``split`` (``query`` -> ``test``)."""
        return self.mapping.file.splits[split]

    def lookup(self, split: str, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State codes ``(n, n_groups)`` int16 of the images of ``split`` with these ``pids``.

        Returns the codes and a boolean ``found`` per image; images whose pid the file does not
        annotate get ``-1`` in every group.
        """
        table = self.states[self.struct_for(split)]
        pids = np.asarray(pids, dtype=np.int64)
        pos = table.index.get_indexer(pids)
        found = pos >= 0
        codes = np.full((pids.size, table.shape[1]), MISSING, dtype=np.int16)
        codes[found] = table.to_numpy(dtype=np.int16)[pos[found]]
        return codes, found

    def num_ids(self, struct: str) -> int:
        return int(len(self.states[struct]))


# --------------------------------------------------------------------------- MATLAB access
def _load_mat(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise MosaicError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read: re-save it with save(..., '-v7')"
        ) from None
    except Exception as exc:  # scipy raises ValueError, MatReadError, TypeError, struct.error ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MosaicError(
            f"{path} is not a readable MATLAB .mat file ({reason}): pass the Lin et al. attribute file, "
            "e.g. market_attribute.mat"
        ) from None


def _unwrap(value: Any) -> Any:
    """Strip the (1, 1) object boxes that loadmat wraps around struct fields and cells."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def _struct_fields(struct: Any) -> tuple[str, ...]:
    struct = _unwrap(struct)
    names = getattr(getattr(struct, "dtype", None), "names", None)
    return tuple(names or ())


def _struct_get(struct: Any, name: str) -> Any:
    struct = _unwrap(struct)
    return _unwrap(struct[name])


def _ids(value: Any, where: str) -> np.ndarray:
    """Identity labels as int64, from a cell array of strings, a char array or numbers."""
    value = _unwrap(value)
    if not isinstance(value, np.ndarray):
        value = np.asarray([value])
    items = value.ravel()
    labels = []
    for item in items:
        item = _unwrap(item)
        if isinstance(item, np.ndarray):
            item = item.ravel()
            item = "".join(str(x) for x in item) if item.dtype.kind in "US" else (item[0] if item.size else "")
        labels.append(str(item).strip())
    try:
        return np.asarray([int(float(x)) for x in labels], dtype=np.int64)
    except ValueError:
        bad = next(x for x in labels if not x.replace(".", "", 1).lstrip("-").isdigit())
        raise MosaicError(f"{where} holds a non-numeric identity label {bad!r}: identity labels must be like '0002'") from None


# ------------------------------------------------------------------------------ reading
def read_attribute_file(
    path: str | Path, dataset: str | Path | AttributeSchema | AttributeMapping | None = None
) -> AttributeTable:
    """Read a Lin et al. attribute file into identity-level state tables plus findings.

    ``dataset`` is the schema the file must match: a shipped name (``market1501``,
    ``dukemtmc``), a schema YAML with ``source`` entries, a schema object or a mapping; ``None``
    recognises the file by its top-level variable (``market_attribute``, ``duke_attribute``).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MosaicError(f"attribute file {path} does not exist: pass the Lin et al. .mat file (e.g. market_attribute.mat)")
    contents = _load_mat(path)
    variables = [k for k in contents if not k.startswith("__")]
    mapping = _mapping_for(path, variables, dataset)
    top = contents[mapping.file.key]

    raw_tables: dict[str, pd.DataFrame] = {}
    for struct in mapping.file.structs:
        raw_tables[struct] = _read_struct(path, top, struct, mapping)

    decoded = {struct: mapping.decode({c: raw[c].to_numpy() for c in raw.columns}) for struct, raw in raw_tables.items()}
    groups = list(mapping.schema.group_names)
    states = {
        struct: pd.DataFrame({g: decoded[struct][g].codes for g in groups}, index=raw_tables[struct].index)
        for struct in raw_tables
    }
    findings = [
        Finding(
            "info",
            "attribute-file",
            f"{path.name}: {mapping.schema.name} annotations, "
            + " / ".join(f"{len(t)} {s} ids" for s, t in raw_tables.items())
            + f", {len(mapping.fields)} raw attributes in {len(groups)} groups",
            sum(len(t) for t in raw_tables.values()),
        ),
        *_decode_findings(mapping, decoded, raw_tables),
    ]
    return AttributeTable(
        dataset=mapping.schema.name, path=path, mapping=mapping, states=states, raw=raw_tables, findings=findings
    )


def _mapping_for(path: Path, variables: list[str], dataset: Any) -> AttributeMapping:
    shipped = shipped_mappings()
    by_key = {m.file.key: name for name, m in shipped.items()}
    if dataset is None:
        known = [v for v in variables if v in by_key]
        if not known:
            raise MosaicError(
                f"{path} holds {variables or 'no variables'}, not a Lin et al. attribute file "
                f"(expected one of {sorted(by_key)}): pass market_attribute.mat or duke_attribute.mat"
            )
        return shipped[by_key[known[0]]]
    mapping = dataset if isinstance(dataset, AttributeMapping) else load_mapping(dataset)
    if mapping.file.key not in variables:
        other = [by_key[v] for v in variables if v in by_key]
        if other:
            raise MosaicError(
                f"{path} holds {other[0]} annotations ({[v for v in variables if v in by_key][0]}), but the images "
                f"are {mapping.schema.name}: pass {mapping.file.filename} ({mapping.file.url or 'the matching file'})"
            )
        raise MosaicError(
            f"{path} has no variable {mapping.file.key!r} (it holds {variables}): pass {mapping.file.filename}"
        )
    return mapping


def _read_struct(path: Path, top: Any, struct: str, mapping: AttributeMapping) -> pd.DataFrame:
    where = f"{path.name}:{mapping.file.key}.{struct}"
    if struct not in _struct_fields(top):
        raise MosaicError(
            f"{path} has no {struct!r} struct under {mapping.file.key!r} (found {list(_struct_fields(top))}): "
            "pass an unmodified Lin et al. attribute file"
        )
    node = _struct_get(top, struct)
    names = _struct_fields(node)
    missing = [f for f in (mapping.file.ids, *mapping.fields) if f not in names]
    if missing:
        raise MosaicError(
            f"{where} lacks the fields {missing} that schema {mapping.schema.name!r} reads: "
            "pass the matching attribute file or a schema whose sources name these fields"
        )
    pids = _ids(_struct_get(node, mapping.file.ids), f"{where}.{mapping.file.ids}")
    duplicated = pd.Index(pids)[pd.Index(pids).duplicated()]
    if len(duplicated):
        raise MosaicError(f"{where} lists identity {int(duplicated[0]):04d} twice: each identity needs one row")
    columns: dict[str, np.ndarray] = {}
    for name in names:
        if name == mapping.file.ids:
            continue
        values = np.asarray(_struct_get(node, name))
        if values.dtype.kind not in "iuf" or values.size != pids.size:
            if name in mapping.fields:
                raise MosaicError(
                    f"{where}.{name} should hold {pids.size} integer codes, one per identity; got {values.dtype} "
                    f"of shape {values.shape}"
                )
            continue  # a foreign extra field does not concern us
        columns[name] = values.ravel().astype(np.uint8)
    return pd.DataFrame(columns, index=pd.Index(pids, name="pid"))


def _split_counts(per_struct: Mapping[str, int]) -> str:
    return " / ".join(f"{n} {s}" for s, n in per_struct.items())


def _examples(index: pd.Index, mask: np.ndarray, limit: int = 5) -> str:
    ids = [f"{int(p):04d}" for p in index[mask][:limit]]
    return ", ".join(ids) + (", ..." if int(mask.sum()) > limit else "")


def _decode_findings(
    mapping: AttributeMapping, decoded: Mapping[str, Mapping[str, Decoded]], raw: Mapping[str, pd.DataFrame]
) -> list[Finding]:
    findings: list[Finding] = []
    for group in mapping.schema.groups:
        source = mapping.sources[group.name]
        per = {s: decoded[s][group.name] for s in decoded}

        missing = {s: int(d.missing.sum()) for s, d in per.items()}
        if any(missing.values()):
            examples = "; ".join(f"{s}: {_examples(raw[s].index, d.missing)}" for s, d in per.items() if d.missing.any())
            findings.append(
                Finding(
                    "warning",
                    "attribute-missing",
                    f"{group.name}: {_split_counts(missing)} ids not annotated (raw 0), loaded as missing ({examples})",
                    sum(missing.values()),
                )
            )

        none = {s: int(d.none_marked.sum()) for s, d in per.items()}
        if any(none.values()):
            target = getattr(source, "none_marked", None)
            findings.append(
                Finding(
                    "info",
                    "colour-none-marked",
                    f"{group.name}: {_split_counts(none)} ids have no {group.description or group.name} marked "
                    f"-> {target!r}",
                    sum(none.values()),
                )
            )

        multi = {s: int(d.multi_marked.sum()) for s, d in per.items()}
        if any(multi.values()):
            shown = []
            for s, d in per.items():
                for row in np.flatnonzero(d.multi_marked)[:3]:
                    states = "+".join(st for st, on in zip(group.states, d.marked[row]) if on)
                    shown.append(f"{int(raw[s].index[row]):04d} ({states})")
            rule = getattr(source, "multi_marked", "first")
            outcome = "first marked state in schema order kept" if rule == "first" else f"rule {rule!r} applied"
            findings.append(
                Finding(
                    "warning",
                    "colour-multi-marked",
                    f"{group.name}: {_split_counts(multi)} ids have several states marked, {outcome} "
                    f"(e.g. {', '.join(shown)})",
                    sum(multi.values()),
                )
            )

        for name, into in getattr(source, "pooled", {}).items():
            counts = {s: d.pooled.get(name, 0) for s, d in per.items()}
            findings.append(
                Finding(
                    "info",
                    "state-pooled",
                    f"{group.name}: field {name} ({_split_counts(counts)} ids marked) pooled into {into!r} by the schema",
                    sum(counts.values()),
                )
            )

    unused = sorted({c for r in raw.values() for c in r.columns} - set(mapping.fields))
    if unused:
        findings.append(
            Finding("info", "attribute-unused", f"raw fields not used by schema {mapping.schema.name!r}: {unused}", len(unused))
        )
    return findings

"""The trace's on-disk layout, as data: every array's path, axes, dtype, units and meaning.

The writer (:mod:`mosaic.tracefile.write`), the reader (:mod:`mosaic.tracefile.read`) and
``docs/trace-format.md`` (checked by the tests) all follow these tables. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from mosaic.conditions import CONDITION_KINDS  # the registry: a kind registered there is a valid trace kind

__all__ = ["ARRAYS", "ArraySpec", "COORDINATES", "ENCODING_TYPE", "GROUPS", "SCHEMA_VERSION", "UNCHECKED_VERSION"]

ENCODING_TYPE = "mosaic-trace"
# semantic version of the on-disk layout; readers accept the same MAJOR. 1.1.0 added
# conditions/filled_routes, conditions/fill_method and routing/fixed_gates (and the kinds fixed,
# relabel, code); a 1.0.0 file reads with their "not recorded" values. 1.2.0 added /pairs (a seeded
# sample of different-identity query-gallery pairs and their distance per condition, which the
# embedding audit's distance_sharing reads) and the kind embedding; older files read an empty pair axis.
# 1.3.0 added a checksum on every dataset (mosaic.tracefile.checksums), verified on read; older files
# read without them.
SCHEMA_VERSION = "1.3.0"
UNCHECKED_VERSION = "1.2.0"  # the layout without checksums (write_trace(checksums=False))


# ---------------------------------------------------------------------------------------------
# On-disk layout, as data: one entry per array. Writer, reader and docs/trace-format.md follow it.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArraySpec:
    field: str            # TraceData attribute
    path: str             # HDF5 path
    dims: tuple[str, ...]
    dtype: str            # numpy dtype on disk; "str" = variable-length UTF-8
    long_name: str
    units: str
    description: str
    compress: bool = False
    since: str = "1.0.0"  # schema version that added the array; older files read its "not recorded" value


ARRAYS: tuple[ArraySpec, ...] = (
    # ------------------------------------------------------------------- query images
    ArraySpec("query_pid", "query_images/pid", ("query",), "int64", "query identity", "1",
              "Person identity label of each query image."),
    ArraySpec("query_camid", "query_images/camid", ("query",), "int64", "query camera", "1",
              "Camera id of each query image, 1-based as in the file names."),
    ArraySpec("query_path", "query_images/path", ("query",), "str", "query image path", "",
              "Image path relative to the dataset root (absolute if the image lies outside it)."),
    ArraySpec("query_states", "query_images/states", ("query", "group"), "int16", "query attribute states", "1",
              "State code per attribute group: index into the group's states (see /schema), -1 = not annotated."),
    ArraySpec("valid", "query_images/valid", ("query",), "bool", "query is valid", "1",
              "A true match (same identity, other camera) exists in the gallery; invalid queries are "
              "excluded from every mean and carry NaN / -1 in /retrieval."),
    # ----------------------------------------------------------------- gallery images
    ArraySpec("gallery_pid", "gallery_images/pid", ("gallery",), "int64", "gallery identity", "1",
              "Person identity label of each gallery image; 0 = distractor."),
    ArraySpec("gallery_camid", "gallery_images/camid", ("gallery",), "int64", "gallery camera", "1",
              "Camera id of each gallery image, 1-based."),
    ArraySpec("gallery_path", "gallery_images/path", ("gallery",), "str", "gallery image path", "",
              "Image path relative to the dataset root (absolute if the image lies outside it)."),
    ArraySpec("gallery_states", "gallery_images/states", ("gallery", "group"), "int16",
              "gallery attribute states", "1",
              "State code per attribute group, -1 = not annotated (distractors: every group)."),
    # --------------------------------------------------------------------- conditions
    ArraySpec("condition_kind", "conditions/kind", ("condition",), "str", "condition kind", "",
              "A registered condition kind (mosaic.conditions): " + ", ".join(CONDITION_KINDS) + "."),
    ArraySpec("condition_group", "conditions/target_group", ("condition",), "str", "target attribute group", "",
              "The group a drop/only/counterfactual/fixed/relabel condition acts on; empty for other kinds."),
    ArraySpec("condition_router", "conditions/router", ("condition",), "str", "router", "",
              "How gates are chosen: oracle (ground-truth states), learned (predicted states) or none."),
    ArraySpec("enabled_groups", "conditions/enabled", ("condition", "group"), "bool", "enabled groups", "1",
              "True where the group's experts may be switched on under the condition."),
    ArraySpec("mAP", "conditions/mAP", ("condition",), "float64", "mean average precision", "1",
              "Mean of /retrieval/ap over valid queries, in [0, 1]."),
    ArraySpec("mINP", "conditions/mINP", ("condition",), "float64", "mean inverse negative penalty", "1",
              "Mean of /retrieval/inp over valid queries, in [0, 1]."),
    ArraySpec("cmc", "conditions/cmc", ("condition", "rank"), "float64", "cumulative matching characteristic", "1",
              "Fraction of valid queries whose first true match is at or above each rank."),
    ArraySpec("filled_routes", "conditions/filled_routes", ("condition",), "int64", "filled routes", "1",
              "Number of (image, enabled group) routes, over query and gallery images, whose state was missing "
              "and was filled (see fill_method) instead of being left off; 0 in files older than 1.1.",
              since="1.1.0"),
    ArraySpec("fill_method", "conditions/fill_method", ("condition",), "str", "how missing states were routed", "",
              "learned (the learned router's predicted state), fixed (the group's fixed gates) or none "
              "(nothing filled; in files older than 1.1 missing states were left off).", since="1.1.0"),
    # ---------------------------------------------------------- per condition x query
    ArraySpec("ap", "retrieval/ap", ("condition", "query"), "float32", "average precision", "1",
              "Non-interpolated average precision of the query's ranking; NaN where the query is invalid."),
    ArraySpec("inp", "retrieval/inp", ("condition", "query"), "float32", "inverse negative penalty", "1",
              "Number of true matches / rank of the hardest true match; NaN where the query is invalid."),
    ArraySpec("rank1", "retrieval/rank1", ("condition", "query"), "bool", "rank-1 hit", "1",
              "The nearest gallery image (after same-identity same-camera removal) is a true match."),
    ArraySpec("first_match_rank", "retrieval/first_match_rank", ("condition", "query"), "int32",
              "rank of the first true match", "1",
              "1-based rank of the first true match after same-identity same-camera removal; -1 where invalid."),
    ArraySpec("topk_index", "retrieval/topk_index", ("condition", "query", "topk"), "int32",
              "nearest gallery images", "1",
              "Indices into the gallery axis of the k nearest gallery images, nearest first, after "
              "same-identity same-camera removal; -1 pads when fewer remain.", compress=True),
    ArraySpec("topk_distance", "retrieval/topk_distance", ("condition", "query", "topk"), "float32",
              "distance to the nearest gallery images", "1",
              "Distance (see the root attribute 'distance') to each of topk_index; NaN pads.", compress=True),
    # -------------------------------------------------------------------------- gates
    ArraySpec("gates", "routing/gates", ("condition", "query", "layer", "expert"), "float32", "gate weight", "1",
              "Weight of each expert's low-rank update at each expert-carrying block for the query image.",
              compress=True),
    ArraySpec("fixed_gates", "routing/fixed_gates", ("expert",), "float32", "fixed gate", "1",
              "Gate of each expert under its group's fixed gates: its state's share among the training "
              "identities (sums to 1 per group); NaN when the model had none or the file is older than 1.1.",
              since="1.1.0"),
    # ------------------------------------------------------------ sampled image pairs
    ArraySpec("pair_query", "pairs/query", ("pair",), "int64", "query image of the pair", "1",
              "Index into the query axis of each sampled pair's query image.", since="1.2.0"),
    ArraySpec("pair_gallery", "pairs/gallery", ("pair",), "int64", "gallery image of the pair", "1",
              "Index into the gallery axis of each sampled pair's gallery image: an annotated image of "
              "another identity than the query's (never a distractor).", since="1.2.0"),
    ArraySpec("pair_distance", "pairs/distance", ("condition", "pair"), "float32", "distance of the pair", "1",
              "Distance (see the root attribute 'distance') between the pair's two images under each "
              "condition; NaN where the condition did not record it.", compress=True, since="1.2.0"),
)

# Per-group encoding labels (AnnData style: every group says what it holds and in which version).
GROUPS = {
    "query_images": "Per query image: identity, camera, path, attribute states, validity.",
    "gallery_images": "Per gallery image: identity, camera, path, attribute states.",
    "conditions": "Per routing condition: kind, target group, router, enabled groups, summary metrics.",
    "retrieval": "Per condition x query: AP, INP, rank-1 hit, first-match rank, top-k neighbours.",
    "routing": "Per condition x query x layer x expert: gate weights; per expert: the fixed gates.",
    "pairs": "A seeded sample of different-identity (query, gallery) image pairs and their distance per condition "
             "(empty when not recorded).",
    "schema": "The attribute schema: groups, their families, the state of every expert.",
    "provenance": "How the trace was made: command, config, versions, commit, checkpoint, data, seed, device.",
}

COORDINATES = {
    "condition": ("str", "routing condition", "Condition name, e.g. oracle, none, drop:hat, subset:3."),
    "query": ("int64", "query image index", "Position of the query image; identical order in every condition."),
    "gallery": ("int64", "gallery image index", "Position of the gallery image; /retrieval/topk_index points here."),
    "group": ("str", "attribute group", "Attribute group name, in schema order."),
    "expert": ("str", "expert", "Expert label 'group=state', in schema order (groups in order, states in order)."),
    "layer": ("int32", "expert-carrying block", "0-based index of the transformer block in the backbone."),
    "rank": ("int32", "rank", "CMC rank, 1-based."),
    "topk": ("int32", "neighbour position", "Position in the top-k list, 1 = nearest."),
    "pair": ("int64", "sampled pair index", "Position of the sampled image pair in /pairs."),
}

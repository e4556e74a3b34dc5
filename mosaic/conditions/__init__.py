"""Routing conditions: which experts the router may switch on, and from which states (torch-free).

A condition is one routing of experts applied to every query and gallery image alike.

============================  ===============================================================
``oracle``                    every group routed by its ground-truth state
``none``                      no expert: the backbone alone
``drop:<group>``              every group but one
``only:<group>``              one group alone
``counterfactual:<group>``    every group, but ``<group>`` routed by *another identity's* state
``subset:<i>``                a seeded random set of enabled groups (the paper's configurations)
``learned``                   every group routed by the model's learned router (if it has one)
``fixed:<group>``             every group, ``<group>`` routed by the same fixed gates for every image
``relabel:<group>``           every group, ``<group>``'s states consistently permuted (a derangement)
``code``                      no model: retrieval by the distance between attribute codes
``embedding:<model>``         no experts: an external model's exported features (``--features``)
============================  ===============================================================

:mod:`.registry` holds the registry of kinds and the selection by patterns; :mod:`.kinds` the
first seven kinds, :mod:`.interventions` the last three (and the routing of unannotated images),
:mod:`.codes` the attribute-code retrieval, :mod:`.state_shares` the training state shares behind
the fixed gates. Importing this package registers the built-in kinds, in the order above.
"""

from __future__ import annotations

from mosaic.conditions.registry import (
    CONDITION_KINDS,
    FIXED_GATE_MODES,
    Condition,
    ConditionContext,
    ConditionKind,
    IdentityStates,
    StateTransform,
    available_conditions,
    default_patterns,
    register_condition_kind,
    resolve_conditions,
    unknown_group,
)
from mosaic.conditions.kinds import CounterfactualStates, default_n_subsets, subset_masks  # registers oracle ... learned
from mosaic.conditions.interventions import FixedStates, RelabelStates, fill_missing_routes  # then fixed, relabel, code
from mosaic.conditions.embedding import EMBEDDING_KIND, embedding_condition_name  # then embedding

__all__ = [
    "CONDITION_KINDS", "EMBEDDING_KIND", "FIXED_GATE_MODES", "Condition", "ConditionContext", "ConditionKind", "CounterfactualStates",
    "FixedStates", "IdentityStates", "RelabelStates", "StateTransform", "available_conditions", "default_n_subsets",
    "default_patterns", "embedding_condition_name", "fill_missing_routes", "register_condition_kind", "resolve_conditions", "subset_masks",
    "unknown_group",
]

"""The names of the routers, torch-free: what a trace file, a training config and a condition may name.

The router classes live in :data:`mosaic.model.routers.ROUTERS` (torch); that registry and this one
are filled together by :func:`mosaic.model.routers.register_router`, so a router registered from user
code is a valid ``eval.routers`` entry and a valid trace router at once. Code without torch
(``mosaic.tracefile``, ``mosaic.train.config``, ``analysis``) reads the names here.
"""

from __future__ import annotations

__all__ = ["ROUTER_NAMES", "register_router_name"]

# name -> what the router does
ROUTER_NAMES: dict[str, str] = {
    "oracle": "the ground-truth attribute states switch the experts on",
    "learned": "the model's router heads predict the states from the trunk tokens",
    "none": "no expert on (the backbone alone)",
}


def register_router_name(name: str, description: str = "") -> str:
    """Make ``name`` a valid router name (called by :func:`mosaic.model.routers.register_router`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a router name must be a non-empty string, got {name!r}")
    ROUTER_NAMES.setdefault(name, description)
    return name

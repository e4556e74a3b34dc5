"""Routers: from attribute states (or the image) to one gate per expert.

Every router maps a batch to ``(B, E)`` gates over the experts of an
:class:`~mosaic.core.schema.AttributeSchema` (``schema.experts`` order) and honours an ``enabled``
group mask ``(G,)``: a disabled group's experts are all off. Routers are looked up by name in
:data:`ROUTERS`:

- ``oracle``: one-hot per group from the ground-truth state codes; a missing state (``-1``) switches
  that group's experts off, and :class:`Routing` records where that happened. The code ``FIXED``
  (``-2``) routes the group by its *fixed gates* (each expert weighted by its state's share among
  the training identities, :mod:`mosaic.conditions.state_shares`), set with ``set_fixed_gates``.
- ``learned``: predicts each group's state from the trunk's CLS token with one head per group and
  switches on the argmax state's expert (hard one-hot), so the model runs without annotations.
- ``none``: every gate zero (the backbone alone).

Hard argmax by default for the learned router: the experts are trained under one-hot oracle
gates, so a one-hot learned gate is the input distribution they know, and the oracle-versus-learned
gap then measures only the router's mistakes. Soft gates (each group's state probabilities,
``model.router_gates: soft``) are the option for a deployable model: an unsure router then spreads
a group over its states instead of committing to a wrong one, at the price of mixtures never seen in
training. Training the heads uses their logits directly (:func:`attribute_loss`), so neither needs
a gradient through the gates.

The learned router reads the trunk's tokens **detached** by default (``model.router_detach``): the
attribute loss then trains the router heads only, and the backbone stays a plain ReID backbone,
so ``none`` measures the backbone alone rather than an attribute-multitask one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mosaic.core.errors import MosaicError
from mosaic.core.schema import FIXED, MISSING, AttributeSchema

__all__ = [
    "Routing",
    "Router",
    "OracleRouter",
    "LearnedRouter",
    "NullRouter",
    "ROUTERS",
    "register_router",
    "attribute_loss",
    "attribute_accuracy",
]


@dataclass
class Routing:
    """Gates of one batch and the groups they left off for lack of a label.

    Attributes:
        gates: ``(B, E)`` float gate per expert.
        missing: ``(B, G)`` bool, True where an enabled group was switched off because its state
            is missing (distractors, unannotated images); ``n_missing`` counts them.
    """

    gates: torch.Tensor
    missing: torch.Tensor

    @property
    def n_missing(self) -> int:
        return int(self.missing.sum())


class Router(nn.Module):
    """Base class: ``route(states, enabled, tokens) -> Routing`` over a schema's experts.

    Every router is built as ``cls(schema, embed_dim, hidden)``; routers without parameters ignore
    the last two.
    """

    needs_states: bool = False
    needs_tokens: bool = False
    # whether ``route`` takes ``check_codes`` (routers registered from user code may not)
    validates_codes: bool = False

    def __init__(self, schema: AttributeSchema, embed_dim: int = 0, hidden: int = 0) -> None:
        super().__init__()
        self.schema = schema
        n_states = torch.tensor([len(g.states) for g in schema.groups], dtype=torch.long)
        offsets = torch.tensor(schema.expert_offsets, dtype=torch.long)
        # buffers so they follow the model to its device; not persistent: they are schema, not weights
        self.register_buffer("n_states", n_states, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)

    @property
    def n_groups(self) -> int:
        return len(self.schema.groups)

    def enabled_mask(self, enabled: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """``(G,)`` bool; ``None`` enables every group."""
        if enabled is None:
            return torch.ones(self.n_groups, dtype=torch.bool, device=device)
        enabled = torch.as_tensor(enabled, device=device)
        if enabled.dtype != torch.bool or enabled.shape != (self.n_groups,):
            raise ValueError(
                f"enabled must be a bool tensor of shape ({self.n_groups},) in schema group order, "
                f"got {enabled.dtype} {tuple(enabled.shape)}"
            )
        return enabled

    def one_hot(self, codes: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
        """``(B, E)`` gates with expert ``offsets[g] + codes[b, g]`` on wherever ``on[b, g]``."""
        index = self.offsets + codes.clamp(min=0)
        # each group writes into its own slice, so the scatter never collides
        gates = torch.zeros(codes.shape[0], self.schema.n_experts, device=codes.device)
        return gates.scatter_(1, index, on.to(gates.dtype))

    def route(
        self,
        states: torch.Tensor | None = None,
        enabled: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        check_codes: bool = True,
    ) -> Routing:
        """Gates of a batch. ``check_codes=False`` skips the validation of ``states`` that needs
        their values on the host (a device sync): for loops that checked every code once before
        starting (:meth:`OracleRouter.check_codes`)."""
        raise NotImplementedError


class OracleRouter(Router):
    """One-hot gates from ground-truth state codes ``(B, G)`` (``-1`` = missing -> group off;
    ``-2`` = ``FIXED`` -> the group's fixed gates)."""

    needs_states = True
    validates_codes = True

    def __init__(self, schema: AttributeSchema, embed_dim: int = 0, hidden: int = 0) -> None:
        super().__init__(schema, embed_dim, hidden)
        expert_group = torch.tensor([schema.group_names.index(g) for g, _ in schema.experts], dtype=torch.long)
        self.register_buffer("expert_group", expert_group, persistent=False)
        # NaN until set: training sets them from its identities, loading from the checkpoint
        self.register_buffer("fixed_gates", torch.full((schema.n_experts,), float("nan")), persistent=False)

    @property
    def has_fixed_gates(self) -> bool:
        return not bool(torch.isnan(self.fixed_gates).any())

    def set_fixed_gates(self, gates) -> None:
        """Fixed gate ``(E,)`` of every expert (its state's training share), in schema expert order."""
        gates = torch.as_tensor(gates, dtype=torch.float32).reshape(-1)
        if gates.shape != self.fixed_gates.shape:
            raise ValueError(f"fixed gates must have one weight per expert ({self.schema.n_experts}), got {tuple(gates.shape)}")
        self.fixed_gates.copy_(gates.to(self.fixed_gates.device))

    def check_codes(self, states, enabled=None) -> None:
        """Refuse state codes ``(N, G)`` (numpy or tensor) this router cannot route: codes outside
        ``[-2, n_states)``, or ``FIXED`` in an enabled group of a model without fixed gates. On the
        host, once: :meth:`route` does it per batch unless told the codes were checked."""
        codes = states.detach().cpu().numpy() if isinstance(states, torch.Tensor) else np.asarray(states)
        n_states = np.array([len(g.states) for g in self.schema.groups])
        if codes.ndim != 2 or codes.shape[1] != self.n_groups:
            raise ValueError(f"states must be (batch, {self.n_groups}) state codes, got {tuple(codes.shape)}")
        if ((codes < FIXED) | (codes >= n_states)).any():
            raise MosaicError(
                f"state codes out of range for schema {self.schema.name!r}: each column must lie in "
                f"[-2, n_states) with n_states {n_states.tolist()}; check that data and model share a schema"
            )
        mask = np.ones(self.n_groups, bool) if enabled is None else np.asarray(
            enabled.detach().cpu() if isinstance(enabled, torch.Tensor) else enabled, bool)
        if ((codes == FIXED) & mask).any() and not self.has_fixed_gates:
            raise MosaicError(
                "fixed gates asked for but this model has no training state shares: train with this mosaic, "
                "or trace with the dataset the checkpoint was trained on so they can be recomputed"
            )

    def route(self, states=None, enabled=None, tokens=None, check_codes=True) -> Routing:
        if states is None:
            raise MosaicError("the oracle router needs attribute states: pass states or use router 'learned'")
        if states.dim() != 2 or states.shape[1] != self.n_groups:
            raise ValueError(f"states must be (batch, {self.n_groups}) state codes, got {tuple(states.shape)}")
        states = states.long()
        mask = self.enabled_mask(enabled, states.device)
        if check_codes:
            self.check_codes(states, mask)
        present = states >= 0
        gates = self.one_hot(states, present & mask)
        # branch-free (no sync): where no group is FIXED this adds exact zeros, and ``where`` keeps
        # the NaN of unset fixed gates out of every row that does not use them
        fixed = (states == FIXED) & mask
        gates = gates + torch.where(fixed[:, self.expert_group], self.fixed_gates.to(gates.dtype), 0.0)
        return Routing(gates=gates, missing=(states == MISSING) & mask)


class NullRouter(Router):
    """All gates zero: the backbone without experts."""

    def route(self, states=None, enabled=None, tokens=None, check_codes=True) -> Routing:
        ref = states if states is not None else tokens
        if ref is None:
            raise ValueError("the 'none' router needs states or tokens to know the batch size")
        batch = ref.shape[0]
        gates = torch.zeros(batch, self.schema.n_experts, device=ref.device)
        return Routing(gates=gates, missing=torch.zeros(batch, self.n_groups, dtype=torch.bool, device=ref.device))


class LearnedRouter(Router):
    """Predicts each group's state from the trunk's CLS token; gates are the argmax one-hot.

    Args:
        schema: attribute groups and states.
        embed_dim: width of the trunk tokens.
        hidden: ``0`` for one linear head per group; otherwise each head is a two-layer MLP with
            this hidden width.

    ``logits(tokens)`` gives the attribute logits (dict group -> ``(B, n_states)``) that
    :func:`attribute_loss` trains; ``route`` turns their argmax into gates.
    """

    needs_tokens = True
    GATES = ("hard", "soft")

    def __init__(self, schema: AttributeSchema, embed_dim: int, hidden: int = 0) -> None:
        super().__init__(schema)
        self.detach_input = True  # see the module docstring; MosaicReID sets both from its config
        self.gate_mode = "hard"
        if embed_dim < 1:
            raise ValueError(f"the learned router needs the token width embed_dim, got {embed_dim}")
        # the residual stream before the final norm is unnormalised; one LayerNorm steadies all heads
        self.norm = nn.LayerNorm(embed_dim)

        def head(n: int) -> nn.Module:
            if hidden > 0:
                return nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, n))
            return nn.Linear(embed_dim, n)

        self.heads = nn.ModuleDict({g.name: head(len(g.states)) for g in schema.groups})

    def logits(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attribute logits per group from ``tokens`` (B, T, D) (uses the CLS token, index 0)."""
        cls = tokens[:, 0].detach() if self.detach_input else tokens[:, 0]
        cls = self.norm(cls)
        return {name: head(cls) for name, head in self.heads.items()}

    def decision_logits(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`logits` in float32 whatever autocast is on: the argmax is a discrete decision,
        and a near-tie flipped by bf16 rounding would change a route, not just round a feature."""
        with torch.autocast(tokens.device.type, enabled=False):
            return self.logits(tokens.float())

    def predict(self, tokens: torch.Tensor) -> torch.Tensor:
        """Predicted state codes ``(B, G)``."""
        return torch.stack([lg.argmax(dim=1) for lg in self.decision_logits(tokens).values()], dim=1)

    def route(self, states=None, enabled=None, tokens=None, check_codes=True) -> Routing:
        if tokens is None:
            raise ValueError("the learned router needs the trunk tokens: pass tokens=model.trunk(images)")
        logits = self.decision_logits(tokens)
        predicted = torch.stack([lg.argmax(dim=1) for lg in logits.values()], dim=1)
        mask = self.enabled_mask(enabled, tokens.device).expand_as(predicted)
        if self.gate_mode == "soft":
            # every group's state probabilities, in schema expert order; disabled groups zeroed
            probs = torch.cat([lg.float().softmax(dim=1) for lg in logits.values()], dim=1)
            gates = probs * mask.repeat_interleave(self.n_states, dim=1).to(probs.dtype)
        else:
            gates = self.one_hot(predicted, mask)
        return Routing(gates=gates, missing=torch.zeros_like(predicted, dtype=torch.bool))


# name -> Router class; MosaicReID builds one of each (``learned`` only with learned_router=True).
ROUTERS: dict[str, type[Router]] = {
    "oracle": OracleRouter,
    "learned": LearnedRouter,
    "none": NullRouter,
}


def register_router(name: str, router: type[Router]) -> None:
    """Add a router class under ``name``; models built afterwards offer it by that name."""
    if not (isinstance(router, type) and issubclass(router, Router)):
        raise TypeError(f"a router must be a subclass of Router, got {router!r}")
    from mosaic.core.router_names import register_router_name

    ROUTERS[name] = router
    register_router_name(name, (router.__doc__ or "").strip().split("\n")[0])


def attribute_loss(attr_logits: Mapping[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
    """Mean over groups of the cross-entropy of each group's logits, ignoring missing labels.

    ``attr_logits`` is ordered like the schema groups, i.e. like the columns of ``states`` (B, G).
    A group with no label in the batch contributes zero instead of NaN, and nothing here forces a
    device sync.
    """
    losses = []
    for g, logits in enumerate(attr_logits.values()):
        target = states[:, g].long()
        valid = target != MISSING
        per_sample = F.cross_entropy(logits.float(), target.clamp(min=0), reduction="none")
        losses.append((per_sample * valid).sum() / valid.sum().clamp(min=1))
    return torch.stack(losses).mean()


@torch.no_grad()
def state_accuracy(predicted: torch.Tensor, states: torch.Tensor, group_names: Sequence[str]) -> dict[str, float]:
    """Per-group accuracy of predicted state codes ``(B, G)`` over annotated samples (NaN where none is)."""
    out = {}
    for g, name in enumerate(group_names):
        labelled = states[:, g] != MISSING
        n = int(labelled.sum())
        out[name] = float((predicted[labelled, g] == states[labelled, g]).float().mean()) if n else float("nan")
    return out


def attribute_accuracy(attr_logits: Mapping[str, torch.Tensor], states: torch.Tensor) -> dict[str, float]:
    """Per-group accuracy of the argmax prediction over labelled samples (NaN for a group with none)."""
    predicted = torch.stack([logits.argmax(dim=1) for logits in attr_logits.values()], dim=1)
    return state_accuracy(predicted, states.long(), list(attr_logits))

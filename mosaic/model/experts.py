"""LoRA attribute experts: one low-rank adapter per attribute state, mixed per sample by gates.

Each adapted projection ``W`` (a ``nn.Linear`` in a ViT block) becomes

    y = W x + b + (alpha / r) * sum_e g_e * B_e A_e dropout(x)

with one ``(A_e, B_e)`` pair per expert (``schema.experts`` order) and a gate ``g_e`` per sample
from the router. All experts' factors are stacked, ``A`` as ``(E, r, in)`` and ``B`` as
``(E, out, r)``, and the mixture is two dense matmuls over the flattened ``E * r`` axis with the
gates scaled in between: one batched computation, no Python loop over samples or experts, and an
expert whose gate is zero for the whole batch receives exactly zero gradient.

Why not peft for the mixture: peft (0.21) trains one active adapter, or a fixed weighted merge of
adapters shared by the whole batch (``add_weighted_adapter``); its mixed-batch inference
(``adapter_names=[...]``) assigns one adapter per sample, without weights and without gradients.
None of these is a per-sample weighted mixture that trains, so the mixture is this small module.
peft is used where it fits: the plain-LoRA baseline (``adapter="lora"``, injected by
:func:`inject_plain_lora`) and the description of the expert configuration as a
``peft.LoraConfig`` (:func:`lora_config`), stored with the model. Our factors follow peft's
conventions (``A`` Kaiming-uniform, ``B`` zero, scaling ``alpha / r``, dropout on the input), so a
one-hot gate reproduces peft's LoRA numerics exactly (tested).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from mosaic.core.errors import MosaicError

__all__ = [
    "LORA_TARGETS",
    "LoRAExpertMixture",
    "attach_experts",
    "routed",
    "lora_config",
    "inject_plain_lora",
    "target_module_names",
]

# Short names users write -> module path inside a timm ViT block.
LORA_TARGETS: dict[str, str] = {
    "qkv": "attn.qkv",
    "proj": "attn.proj",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}


def _check_targets(targets: Sequence[str]) -> tuple[str, ...]:
    targets = tuple(targets)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise MosaicError(
            f"unknown or empty LoRA targets {unknown or list(targets)}: choose among {list(LORA_TARGETS)}"
        )
    if len(set(targets)) != len(targets):
        raise MosaicError(f"LoRA targets list a projection twice: {list(targets)}")
    return targets


class LoRAExpertMixture(nn.Module):
    """A linear layer plus ``n_experts`` LoRA experts mixed by per-sample gates.

    Args:
        base: the projection being adapted; kept as ``self.base`` (frozen or trained by the caller).
        n_experts: number of experts ``E``.
        rank: LoRA rank ``r``.
        alpha: LoRA alpha; the update is scaled by ``alpha / rank`` as in peft.
        dropout: dropout on the input of the experts (not of ``base``), as peft's ``lora_dropout``.

    Gates are set for a forward pass with :func:`routed` (the module sits inside a timm block, whose
    forward cannot carry them): a ``(B, E)`` tensor, one row per sample of the batch.
    """

    def __init__(self, base: nn.Linear, n_experts: int, rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        if n_experts < 1 or rank < 1:
            raise MosaicError(f"an expert mixture needs n_experts >= 1 and rank >= 1, got {n_experts} and {rank}")
        self.base = base
        self.n_experts, self.rank, self.alpha = int(n_experts), int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(n_experts, rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(n_experts, base.out_features, rank, **factory))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.gates: torch.Tensor | None = None
        self.reset_parameters()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_parameters(self) -> None:
        """peft's default LoRA init: ``A`` Kaiming-uniform per expert, ``B`` zero (a no-op at start)."""
        with torch.no_grad():
            # A 2-D view so the fan-in is ``in_features``, as for peft's nn.Linear(in, r).
            nn.init.kaiming_uniform_(self.lora_A.view(-1, self.in_features), a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)

    def delta(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """The experts' contribution ``(alpha/r) sum_e g_e B_e A_e dropout(x)`` for ``x`` (B, ..., in)."""
        batch, e, r = x.shape[0], self.n_experts, self.rank
        if gates.shape != (batch, e):
            raise ValueError(f"gates must have shape (batch, n_experts) = {(batch, e)}, got {tuple(gates.shape)}")
        h = self.lora_dropout(x).reshape(batch, -1, self.in_features)  # (B, T, in)
        # (B, T, E*r): every expert's down-projection in one matmul
        u = h @ self.lora_A.reshape(e * r, self.in_features).t()
        # gate each expert's r columns; zero gates make both factors' gradients exactly zero
        u = u * (gates.to(u.dtype) * self.scaling).repeat_interleave(r, dim=1).unsqueeze(1)
        # (E, out, r) -> (E*r, out) so row e*r+k is B_e[:, k], matching u's column order
        b_flat = self.lora_B.permute(0, 2, 1).reshape(e * r, self.out_features)
        return (u @ b_flat).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates is None:
            raise RuntimeError(
                "LoRAExpertMixture called without gates: run the block inside `with routed(mixtures, gates):`"
            )
        return self.base(x) + self.delta(x, self.gates)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, experts={self.n_experts}, "
            f"rank={self.rank}, alpha={self.alpha:g}"
        )


def attach_experts(
    block: nn.Module, targets: Sequence[str], n_experts: int, rank: int, alpha: float, dropout: float = 0.0
) -> tuple[LoRAExpertMixture, ...]:
    """Replace the target projections of one timm block by expert mixtures (in place).

    Returns the mixtures in ``targets`` order, so the caller can route them together.
    """
    mixtures = []
    for target in _check_targets(targets):
        parent_path, _, leaf = LORA_TARGETS[target].rpartition(".")
        parent = block.get_submodule(parent_path)
        base = getattr(parent, leaf)
        if not isinstance(base, nn.Linear):
            raise MosaicError(f"cannot put experts on {LORA_TARGETS[target]}: it is a {type(base).__name__}, not a Linear")
        mixture = LoRAExpertMixture(base, n_experts, rank, alpha, dropout)
        setattr(parent, leaf, mixture)
        mixtures.append(mixture)
    return tuple(mixtures)


@contextlib.contextmanager
def routed(mixtures: Iterable[LoRAExpertMixture], gates: torch.Tensor) -> Iterator[None]:
    """Set ``gates`` (B, E) on ``mixtures`` for the duration of a forward pass, then clear them.

    Clearing matters: a later call with another batch must never reuse stale gates silently.
    """
    mixtures = tuple(mixtures)
    for m in mixtures:
        m.gates = gates
    try:
        yield
    finally:
        for m in mixtures:
            m.gates = None


def target_module_names(blocks: Sequence[int], targets: Sequence[str], prefix: str = "blocks") -> list[str]:
    """Full module names (``blocks.10.attn.qkv``) of the adapted projections, relative to the backbone."""
    return [f"{prefix}.{i}.{LORA_TARGETS[t]}" for i in blocks for t in _check_targets(targets)]


def lora_config(blocks: Sequence[int], targets: Sequence[str], rank: int, alpha: float, dropout: float):
    """The adapter configuration as a ``peft.LoraConfig`` (targets named relative to the backbone).

    For the plain-LoRA baseline this is what peft injects; for the experts it describes each
    expert (every expert is one LoRA of this configuration), so it can be saved, compared and
    read back with peft's own tools (``LoraConfig.to_dict()`` / ``PeftConfig.from_peft_type``).
    """
    from peft import LoraConfig

    return LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        lora_dropout=float(dropout),
        target_modules=target_module_names(blocks, targets),
        bias="none",
    )


def inject_plain_lora(backbone: nn.Module, config) -> nn.Module:
    """Inject one shared peft LoRA adapter (``config``, a ``LoraConfig``) into ``backbone`` in place.

    peft marks only its adapters trainable; the caller restores the backbone's ``requires_grad``
    according to its own freezing policy afterwards.
    """
    from peft import inject_adapter_in_model

    return inject_adapter_in_model(config, backbone)

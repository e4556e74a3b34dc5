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

import math
from typing import Sequence

import torch
from torch import nn

from mosaic.core.errors import MosaicError

__all__ = [
    "LORA_TARGETS",
    "LoRAExpertMixture",
    "attach_experts",
    "check_expert_block",
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

    ``forward(x, gates, experts)`` takes the gates as an argument: a ``(B, E)`` tensor, one row
    per sample. ``experts`` (a sorted tuple of expert indices, ``None`` = all) restricts the
    mixture to the experts whose gates may be non-zero; the others contribute exactly zero, so
    leaving their columns out changes only the summation order, and an empty tuple is the base
    projection alone. :func:`expert_block_forward` carries the gates through a timm block.
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
        self._factor_cache: dict[tuple, tuple] = {}
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

    def _apply(self, *args, **kwargs):
        # .to() / .cuda() / .half() replace the factors: the flattened copies describe the old ones
        self._factor_cache = {}
        return super()._apply(*args, **kwargs)

    def _flat_factors(self, experts: tuple[int, ...] | None, dtype: torch.dtype):
        """``A`` as ``(E'*r, in)``, ``B`` as ``(E'*r, out)`` (row ``e*r+k`` is ``B_e[:, k]``) and the
        gate columns ``(index or slice)`` of ``experts``. Without autograd the copies are kept and
        reused until the factors change (their version counters move on every in-place update:
        an optimiser step, ``load_state_dict``, ``copy_``); with autograd they are rebuilt, so the
        gradient flows into the factors."""
        A, B = self.lora_A, self.lora_B
        cached = not torch.is_grad_enabled()
        if cached:
            key = (experts, dtype, A.device, A.data_ptr(), A._version, B.data_ptr(), B._version)
            hit = self._factor_cache.get(key)
            if hit is not None:
                return hit
        columns: slice | torch.Tensor = slice(None)
        if experts is not None:
            first, last = experts[0], experts[-1]
            if experts == tuple(range(first, last + 1)):  # one run of experts (a group): views, no gather
                columns = slice(first, last + 1)
                A, B = A[columns], B[columns]
            else:
                columns = torch.tensor(experts, dtype=torch.long, device=A.device)
                A, B = A.index_select(0, columns), B.index_select(0, columns)
        a_flat = A.reshape(-1, self.in_features)
        b_flat = B.permute(0, 2, 1).reshape(-1, self.out_features)
        if dtype != b_flat.dtype:  # autocast: the in-place accumulation below does not cast
            a_flat, b_flat = a_flat.to(dtype), b_flat.to(dtype)
        factors = (a_flat, b_flat, columns)
        if cached:
            # one entry per expert set in use (all experts, and the latest subset): each is a copy of B
            self._factor_cache = {k: v for k, v in self._factor_cache.items() if k[0] is None}
            self._factor_cache[key] = factors
        return factors

    def add_delta(self, out: torch.Tensor, x: torch.Tensor, gates: torch.Tensor,
                  experts: tuple[int, ...] | None = None) -> torch.Tensor:
        """``out + (alpha/r) sum_e g_e B_e A_e dropout(x)``, accumulated into ``out`` in place
        (``out`` is ``base(x)``; ``x`` is ``(B, ..., in)``, ``gates`` ``(B, E)``)."""
        batch, e, r = x.shape[0], self.n_experts, self.rank
        if gates.shape != (batch, e):
            raise ValueError(f"gates must have shape (batch, n_experts) = {(batch, e)}, got {tuple(gates.shape)}")
        if experts is not None and not experts:
            return out
        a_flat, b_flat, columns = self._flat_factors(experts, out.dtype)
        h = self.lora_dropout(x).reshape(batch, -1, self.in_features)  # (B, T, in)
        u = h @ a_flat.t()  # (B, T, E'*r): every expert's down-projection in one matmul
        g = gates[:, columns] if isinstance(columns, slice) else gates.index_select(1, columns)
        # each expert's r columns times its gate, broadcast on a (B, T, E', r) view; zero gates
        # make both factors' gradients exactly zero
        u = (u.view(batch, u.shape[1], -1, r) * (g.to(u.dtype) * self.scaling)[:, None, :, None]).view(-1, b_flat.shape[0])
        if out.requires_grad or u.requires_grad:  # autograd records out-of-place ops more simply
            return out + (u @ b_flat).view(out.shape)
        out.view(-1, self.out_features).addmm_(u.to(out.dtype), b_flat)
        return out

    def delta(self, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None = None) -> torch.Tensor:
        """The experts' contribution ``(alpha/r) sum_e g_e B_e A_e dropout(x)`` for ``x`` (B, ..., in)."""
        zero = x.new_zeros(*x.shape[:-1], self.out_features)
        return self.add_delta(zero, x, gates, experts)

    def forward(self, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None = None) -> torch.Tensor:
        return self.add_delta(self.base(x), x, gates, experts)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, experts={self.n_experts}, "
            f"rank={self.rank}, alpha={self.alpha:g}"
        )


def check_expert_block(block: nn.Module) -> None:
    """Refuse a block whose forward :func:`mosaic.model.expert_block.expert_block_forward` does not reproduce."""
    from timm.layers import Attention, Mlp
    from timm.models.vision_transformer import Block

    kinds = (type(block), type(getattr(block, "attn", None)), type(getattr(block, "mlp", None)))
    if kinds != (Block, Attention, Mlp):
        names = ", ".join(k.__name__ for k in kinds)
        raise MosaicError(
            f"experts need timm's plain ViT Block with Attention and Mlp, this backbone has ({names}): "
            "choose a ViT backbone with standard blocks"
        )


def attach_experts(
    block: nn.Module, targets: Sequence[str], n_experts: int, rank: int, alpha: float, dropout: float = 0.0
) -> tuple[LoRAExpertMixture, ...]:
    """Replace the target projections of one timm block by expert mixtures (in place).

    Returns the mixtures in ``targets`` order, so the caller can route them together. The block
    then runs with its gates through :func:`mosaic.model.expert_block.expert_block_forward`.
    """
    check_expert_block(block)
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

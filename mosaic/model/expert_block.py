"""The forward pass of a timm ViT block whose projections carry expert mixtures, with the gates as
an argument.

timm's ``Block.forward(x)`` has no place for per-sample gates, so the mixtures used to read them
from a module attribute set around each call. Here the block's forward is spelled out with the
same submodules in the same order (``norm1``, ``attn`` as qkv / attention / proj, ``ls1``,
``drop_path1``, then ``norm2``, ``mlp`` as fc1 / act / fc2, ``ls2``, ``drop_path2``), and each
projection receives ``gates`` and ``experts`` when it is a :class:`LoRAExpertMixture`. The
arithmetic is timm's op for op (a test holds it equal to ``block(x)`` bitwise), nothing is mutated
during the pass, and the whole pass is one traceable function for ``torch.compile``.

Only timm's plain ``Block`` with its ``Attention`` and ``Mlp`` is accepted
(:func:`mosaic.model.experts.check_expert_block`, called when experts are attached); any other block type is refused
rather than run with a forward that might differ from its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .experts import LoRAExpertMixture

__all__ = ["expert_block_forward"]


def _project(layer: nn.Module, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None) -> torch.Tensor:
    if isinstance(layer, LoRAExpertMixture):
        return layer(x, gates, experts)
    return layer(x)


def _attention(attn: nn.Module, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None) -> torch.Tensor:
    # timm.layers.Attention.forward without mask or causality, as Block calls it
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    qkv = _project(attn.qkv, x, gates, experts).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    if attn.fused_attn:
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    else:
        q = q * attn.scale
        weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = attn.attn_drop(weights) @ v
    x = x.transpose(1, 2).reshape(B, N, getattr(attn, "attn_dim", attn.num_heads * attn.head_dim))
    x = attn.norm(x)
    if gate is not None:
        x = x * gate
    return attn.proj_drop(_project(attn.proj, x, gates, experts))


def _mlp(mlp: nn.Module, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None) -> torch.Tensor:
    x = mlp.drop1(mlp.act(_project(mlp.fc1, x, gates, experts)))
    return mlp.drop2(_project(mlp.fc2, mlp.norm(x), gates, experts))


def expert_block_forward(
    block: nn.Module, x: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None = None
) -> torch.Tensor:
    """``block(x)`` with every expert mixture in it routed by ``gates`` ``(B, E)``.

    ``experts`` (sorted expert indices, ``None`` = all) names the experts whose gates may be
    non-zero; the mixtures compute only those columns (see :class:`LoRAExpertMixture`).
    """
    x = x + block.drop_path1(block.ls1(_attention(block.attn, block.norm1(x), gates, experts)))
    return x + block.drop_path2(block.ls2(_mlp(block.mlp, block.norm2(x), gates, experts)))

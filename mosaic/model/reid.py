"""The ReID model: a timm ViT whose last blocks carry attribute experts, a BNNeck and an ID head.

Data flow, split where the tracer needs it::

    images --trunk()--> tokens --gates()--> (B, L, E) --head(tokens, gates)--> ModelOutput
    (patch embed, position embedding,       (router)    (expert blocks, final norm, CLS pool,
     the blocks before the first expert)                  BNNeck, ID classifier, router heads)

``trunk`` does not depend on routing, so the tracer runs it once per image and reuses the tokens
for every routing condition; ``forward`` is exactly ``head(trunk(x), gates(...))``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema

from .backbones import create_backbone, get_backbone_spec, normalisation_of
from .config import ModelConfig
from .expert_block import expert_block_forward
from .adapters import ADAPTERS
from .experts import LoRAExpertMixture, lora_config
from .routers import ROUTERS, LearnedRouter, Router, Routing

__all__ = ["ModelConfig", "ModelOutput", "MosaicReID", "build_model", "normalize_images", "parameter_part", "ADAPTERS"]


@dataclass
class ModelOutput:
    """What one forward pass returns.

    Attributes:
        features: ``(B, D)`` global feature before the BNNeck (for the triplet loss).
        bn_features: ``(B, D)`` feature after the BNNeck (for retrieval at evaluation).
        logits: ``(B, num_classes)`` identity logits.
        attr_logits: group -> ``(B, n_states)`` attribute logits of the learned router, or ``None``
            when the model has no learned router.
    """

    features: torch.Tensor
    bn_features: torch.Tensor
    logits: torch.Tensor
    attr_logits: dict[str, torch.Tensor] | None = None


# Settings that change what a checkpoint's weights mean without changing their shapes.
_ARCHITECTURE_KEYS = ("backbone", "adapter", "expert_blocks", "lora_rank", "lora_alpha", "lora_targets", "learned_router")


class MosaicReID(nn.Module):
    """ViT ReID model with routed LoRA attribute experts; build it with :func:`build_model`.

    Attributes:
        backbone: the timm ``VisionTransformer`` (experts live inside its last blocks).
        bnneck: ``BatchNorm1d`` on the global feature, bias frozen at zero (BNNeck).
        classifier: bias-free identity classifier on the BNNeck feature.
        routers: ``ModuleDict`` of the routers this model supports (``oracle``, ``none`` and, with
            ``learned_router``, ``learned``).
        schema, config, num_classes, img_size, pixel_mean, pixel_std, expert_layers.
    """

    def __init__(self, config: ModelConfig, schema: AttributeSchema, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise MosaicError(f"num_classes must be at least 1 (training identities), got {num_classes}")
        spec = get_backbone_spec(config.backbone)
        self.config, self.schema, self.num_classes = config, schema, int(num_classes)
        self.backbone = create_backbone(
            config.backbone,
            img_size=config.img_size,
            pretrained=config.pretrained,
            pretrained_file=config.pretrained_file,
            pretrained_img_size=config.pretrained_img_size,
            drop_path=config.drop_path,
        )
        depth = len(self.backbone.blocks)
        if config.expert_blocks > depth:
            raise MosaicError(
                f"expert_blocks={config.expert_blocks} exceeds the {depth} blocks of backbone {config.backbone!r}"
            )
        self.img_size: tuple[int, int] = tuple(self.backbone.patch_embed.img_size)
        self.pixel_mean, self.pixel_std = normalisation_of(self.backbone, spec)
        self.pixel_mean = config.pixel_mean or self.pixel_mean
        self.pixel_std = config.pixel_std or self.pixel_std
        # on the model's device, so normalising a batch copies nothing from the host
        self.register_buffer("input_mean", torch.tensor(self.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(self.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.embed_dim: int = self.backbone.embed_dim
        self.expert_layers: tuple[int, ...] = tuple(range(depth - config.expert_blocks, depth))
        # peft's description of each adapter (every expert is one LoRA of this shape); None without adapters
        self.lora_config = (
            lora_config(self.expert_layers, config.lora_targets, config.lora_rank, config.lora_alpha, config.lora_dropout)
            if config.adapter != "none"
            else None
        )

        # Mixtures are registered under the backbone; this tuple is only a route to them.
        self._mixtures: tuple[tuple[LoRAExpertMixture, ...], ...] = ADAPTERS[config.adapter](self)

        self.bnneck = nn.BatchNorm1d(self.embed_dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: a shift-free feature for the cosine metric
        self.classifier = nn.Linear(self.embed_dim, self.num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.routers = nn.ModuleDict(
            {
                name: router(schema, self.embed_dim, config.router_hidden)
                for name, router in ROUTERS.items()
                if name != "learned" or config.learned_router
            }
        )
        if self.learned_router is not None:
            self.learned_router.detach_input = config.router_detach
            self.learned_router.gate_mode = config.router_gates
        self._apply_freezing()

    # ------------------------------------------------------------------ setup
    def _apply_freezing(self) -> None:
        # peft freezes everything but its adapter on injection; the policy here is ours alone.
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(not self.config.freeze_backbone or _is_adapter_parameter(name))
        self.bnneck.bias.requires_grad_(False)

    @property
    def mixtures(self) -> tuple[tuple[LoRAExpertMixture, ...], ...]:
        """Expert mixtures per expert layer (empty tuples unless ``adapter == "experts"``)."""
        return self._mixtures

    @property
    def n_experts(self) -> int:
        return self.schema.n_experts

    @property
    def learned_router(self) -> LearnedRouter | None:
        return self.routers["learned"] if "learned" in self.routers else None

    @property
    def state_shares(self) -> dict[str, list[float]] | None:
        """Per group, each state's share among the training identities (the fixed gates), if set."""
        return getattr(self, "_state_shares", None)

    def set_state_shares(self, shares: Mapping[str, Any]) -> None:
        """Set the training state shares that ``FIXED`` routes (see :mod:`mosaic.conditions.state_shares`)."""
        from mosaic.conditions.state_shares import shares_as_gates, validate_shares

        self._state_shares = validate_shares(shares, self.schema)
        self.routers["oracle"].set_fixed_gates(shares_as_gates(self._state_shares, self.schema))

    # ------------------------------------------------------------------ pieces
    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(B, 3, H, W)`` -> tokens ``(B, T, D)`` entering the first expert block."""
        bb = self.backbone
        if tuple(images.shape[-2:]) != self.img_size:
            raise MosaicError(
                f"images are {tuple(images.shape[-2:])} but the model runs at {self.img_size}: "
                "resize them to the model's img_size"
            )
        x = bb.patch_embed(images)
        x = bb._pos_embed(x)
        x = bb.patch_drop(x)
        x = bb.norm_pre(x)
        for i in range(self.expert_layers[0]):
            x = bb.blocks[i](x)
        return x

    def route(
        self,
        states: torch.Tensor | None = None,
        router: str = "oracle",
        enabled: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        check_codes: bool = True,
    ) -> Routing:
        """Routing of a batch: gates ``(B, L, E)`` (same at every expert layer) and missing groups ``(B, G)``.

        ``check_codes=False`` skips the per-batch validation of ``states`` (a host sync); callers
        that pass it have checked every code once with ``routers["oracle"].check_codes``.
        """
        try:
            chosen: Router = self.routers[router]
        except KeyError:
            hint = " (build with learned_router=True for 'learned')" if router == "learned" else ""
            raise MosaicError(f"unknown router {router!r} for this model: use one of {list(self.routers)}{hint}") from None
        if chosen.needs_tokens and tokens is None:
            raise MosaicError(f"router {router!r} predicts from the image: pass tokens=model.trunk(images)")
        checked = {"check_codes": check_codes} if chosen.validates_codes else {}
        r = chosen.route(states=states, enabled=enabled, tokens=tokens, **checked)
        # per layer so the trace can record them; repeat (not expand) so callers may edit in place
        return Routing(gates=r.gates.unsqueeze(1).repeat(1, len(self.expert_layers), 1), missing=r.missing)

    def gates(
        self,
        states: torch.Tensor | None = None,
        router: str = "oracle",
        enabled: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
        check_codes: bool = True,
    ) -> torch.Tensor:
        """Gates ``(B, L, E)`` for ``states`` (B, G) state codes (``-1`` missing) under ``router``.

        ``enabled`` (G,) bool restricts which groups may switch experts on. ``oracle`` and ``none``
        need no tokens; ``learned`` needs ``tokens`` from :meth:`trunk`.
        """
        return self.route(states, router=router, enabled=enabled, tokens=tokens, check_codes=check_codes).gates

    def active_experts(self, enabled) -> tuple[int, ...]:
        """Sorted indices of the experts of the ``enabled`` groups ``(G,)`` bool: every router leaves
        the other experts' gates at zero, so :meth:`head` may skip them."""
        on = [bool(v) for v in (enabled.tolist() if isinstance(enabled, torch.Tensor) else enabled)]
        offsets = self.schema.expert_offsets
        return tuple(e for g, group in enumerate(self.schema.groups) if on[g]
                     for e in range(offsets[g], offsets[g] + len(group.states)))

    def head(self, tokens: torch.Tensor, gates: torch.Tensor, experts: tuple[int, ...] | None = None) -> ModelOutput:
        """Expert blocks under ``gates`` (B, L, E), final norm, CLS pooling, BNNeck, classifiers.

        ``experts`` (sorted expert indices, ``None`` = all; see :meth:`active_experts`) restricts
        the mixtures to the experts whose gates may be non-zero: the result is the same up to the
        summation order, and ``()`` runs no mixture at all.
        """
        n_layers = len(self.expert_layers)
        if gates.shape != (tokens.shape[0], n_layers, self.n_experts):
            raise ValueError(
                f"gates must be (batch, {n_layers} layers, {self.n_experts} experts), got {tuple(gates.shape)}"
            )
        bb = self.backbone
        x = tokens
        for layer, (block_index, mixtures) in enumerate(zip(self.expert_layers, self._mixtures)):
            block = bb.blocks[block_index]
            x = expert_block_forward(block, x, gates[:, layer], experts) if mixtures else block(x)
        x = bb.norm(x)
        features = bb.fc_norm(bb.pool(x))
        bn_features = self.bnneck(features)
        router = self.learned_router
        return ModelOutput(
            features=features,
            bn_features=bn_features,
            logits=self.classifier(bn_features),
            attr_logits=router.logits(tokens) if router is not None else None,
        )

    def forward(
        self,
        images: torch.Tensor,
        states: torch.Tensor | None = None,
        router: str = "oracle",
        enabled: torch.Tensor | None = None,
        check_codes: bool = True,
    ) -> ModelOutput:
        """``head(trunk(images), gates(states, router, enabled, tokens))`` on normalised images.

        ``check_codes=False``: ``states`` were validated beforehand (see :meth:`route`), so the
        pass makes no host sync.
        """
        tokens = self.trunk(images)
        return self.head(tokens, self.gates(states, router=router, enabled=enabled, tokens=tokens, check_codes=check_codes))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """See :func:`normalize_images`."""
        return normalize_images(images, self)

    # ------------------------------------------------------------------ bookkeeping
    def parameter_counts(self, trainable_only: bool = False) -> dict[str, int]:
        """Parameters per part: ``backbone``, ``experts`` (LoRA factors), ``router``, ``head``, ``total``."""
        counts = dict.fromkeys(("backbone", "experts", "router", "head"), 0)
        for name, p in self.named_parameters():
            if trainable_only and not p.requires_grad:
                continue
            counts[parameter_part(name)] += p.numel()
        counts["total"] = sum(counts.values())
        return counts

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for logs and checkpoints: config, schema fingerprint, peft LoRA config."""
        return {
            "model_config": self.config.to_dict(),
            "schema": self.schema.name,
            "schema_fingerprint": self.schema.fingerprint(),
            "num_classes": self.num_classes,
            "img_size": list(self.img_size),
            "expert_layers": list(self.expert_layers),
            "lora_config": _json_safe(self.lora_config.to_dict()) if self.lora_config is not None else None,
        }

    def get_extra_state(self) -> dict[str, Any]:
        # Travels inside state_dict(), so a checkpoint always says what its weights mean.
        return self.describe()

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        theirs = state.get("model_config", {})
        ours = self.config.to_dict()
        if state.get("schema_fingerprint") != self.schema.fingerprint():
            raise MosaicError(
                f"checkpoint was trained with attribute schema {state.get('schema')!r} "
                f"(fingerprint {state.get('schema_fingerprint')}), this model uses {self.schema.name!r} "
                f"({self.schema.fingerprint()}): build the model with the checkpoint's schema"
            )
        differing = [k for k in _ARCHITECTURE_KEYS if k in theirs and theirs[k] != ours[k]]
        if differing:
            detail = ", ".join(f"{k}={theirs[k]!r} (model has {ours[k]!r})" for k in differing)
            raise MosaicError(f"checkpoint does not match the model: {detail}; build the model from the checkpoint's config")


def _is_adapter_parameter(name: str) -> bool:
    return "lora_" in name


def parameter_part(name: str) -> str:
    """The part a parameter of :class:`MosaicReID` belongs to: ``backbone`` (the pretrained or
    from-scratch ViT), or one of the parts this model adds: ``experts`` (LoRA factors), ``router``,
    ``head`` (BNNeck and classifier)."""
    if name.startswith("routers."):
        return "router"
    if name.startswith(("bnneck.", "classifier.")):
        return "head"
    if _is_adapter_parameter(name):
        return "experts"
    return "backbone"


def _json_safe(value: Any) -> Any:
    # peft configs hold sets and str-enums; JSON is the common ground of checkpoints and traces
    return json.loads(json.dumps(value, default=lambda o: sorted(o, key=str) if isinstance(o, (set, frozenset)) else str(o)))


def build_model(config: ModelConfig, schema: AttributeSchema, num_classes: int) -> MosaicReID:
    """Build a :class:`MosaicReID` from a config, an attribute schema and the number of training ids."""
    return MosaicReID(config, schema, num_classes)


def normalize_images(images: torch.Tensor, model: MosaicReID) -> torch.Tensor:
    """Turn images ``(B, 3, H, W)`` into the normalised float input of ``model``.

    ``uint8`` images are scaled by 1/255; floating images are taken as already in ``[0, 1]``
    (e.g. after a float augmentation). The result is ``(x - pixel_mean) / pixel_std`` in float32,
    on the images' device, so training and tracing normalise identically.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (batch, 3, height, width), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float().div_(255.0)
    elif images.is_floating_point():
        x = images.float()
    else:
        raise TypeError(f"images must be uint8 or floating point, got {images.dtype}")
    mean, std = model.input_mean, model.input_std
    if mean.device != x.device:  # images elsewhere than the model: a copy of 6 floats
        mean, std = mean.to(x.device), std.to(x.device)
    return (x - mean) / std

"""The ReID model: a timm ViT whose last blocks carry attribute experts, a BNNeck and an ID head.

Data flow, split where the tracer needs it::

    images --trunk()--> tokens --gates()--> (B, L, E) --head(tokens, gates)--> ModelOutput
    (patch embed, position embedding,       (router)    (expert blocks, final norm, CLS pool,
     the blocks before the first expert)                  BNNeck, ID classifier, router heads)

``trunk`` does not depend on routing, so the tracer runs it once per image and reuses the tokens
for every routing condition; ``forward`` is exactly ``head(trunk(x), gates(...))``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from mosaic.core.errors import MosaicError
from mosaic.core.schema import AttributeSchema
from mosaic.core.settings import check_fields

from .backbones import create_backbone, get_backbone_spec, normalisation_of
from .experts import LORA_TARGETS, LoRAExpertMixture, attach_experts, inject_plain_lora, lora_config, routed
from .routers import ROUTERS, LearnedRouter, Router, Routing

__all__ = ["ModelConfig", "ModelOutput", "MosaicReID", "build_model", "normalize_images", "parameter_part", "ADAPTERS"]


@dataclass
class ModelConfig:
    """Everything that defines the model's architecture and adapters (saved with checkpoints).

    Attributes:
        backbone: a name in :data:`mosaic.model.BACKBONES`.
        img_size: ``(height, width)``; ``None`` uses the backbone's default.
        pretrained: load the backbone's hub weights (needs network once).
        pretrained_file: load backbone weights from this local file instead (offline).
        pretrained_img_size: ``(height, width)`` the file's weights were trained at (fixes the grid
            their position embeddings are resampled from); ``None`` -> see ``create_backbone``.
        expert_blocks: number N of last blocks that carry experts; the trunk is everything before.
        lora_rank, lora_alpha, lora_dropout: LoRA rank r, alpha (update scaled by alpha/r), input dropout.
        lora_targets: projections adapted in each expert block, among qkv, proj, fc1, fc2.
        adapter: ``experts`` (one LoRA per attribute state, routed), ``lora`` (one shared peft LoRA on
            the same targets: the plain-LoRA baseline) or ``none`` (backbone only).
        learned_router: add the learned router's attribute heads (trained with attribute_loss).
        router_hidden: hidden width of each router head; 0 = one linear layer per group.
        router_detach: the learned router reads detached trunk tokens, so its attribute loss
            trains the router heads only (``False``: it also trains the trunk, making the backbone
            attribute-multitask).
        router_gates: ``hard`` (argmax one-hot, the gates the experts were trained under) or
            ``soft`` (each group's state probabilities) for the learned router.
        freeze_backbone: train only adapters, router, BNNeck and classifier.
        drop_path: stochastic-depth rate of the backbone.
        pixel_mean, pixel_std: input normalisation; ``None`` takes the backbone's (for CLIP, the
            statistics its weights were trained with).
    """

    backbone: str = "vit_micro"
    img_size: tuple[int, int] | None = None
    pretrained: bool = False
    pretrained_file: str | None = None
    pretrained_img_size: tuple[int, int] | None = None
    expert_blocks: int = 2
    lora_rank: int = 4
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")
    adapter: str = "experts"
    learned_router: bool = True
    router_hidden: int = 0
    router_detach: bool = True
    router_gates: str = "hard"
    freeze_backbone: bool = False
    drop_path: float = 0.0
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None

    # ranges and registry-backed choices, checked by mosaic.core.settings.check_fields (the registries are
    # read when the check runs, so a backbone or adapter registered from user code counts)
    bounds: ClassVar[dict[str, tuple]] = {
        "expert_blocks": (1, None), "lora_rank": (1, None), "lora_alpha": (0, None, "(]"), "lora_dropout": (0, 1, "[)"),
        "router_hidden": (0, None), "drop_path": (0, 1, "[)"), "pixel_std": (0, None, "(]"),
    }
    choices: ClassVar[dict[str, Any]] = {
        "router_gates": lambda: LearnedRouter.GATES, "adapter": lambda: sorted(ADAPTERS),
        "lora_targets": lambda: list(LORA_TARGETS),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.lora_targets:
            raise MosaicError(f"lora_targets is empty: choose among {list(LORA_TARGETS)}")
        get_backbone_spec(self.backbone)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("img_size", "pretrained_img_size", "pixel_mean", "pixel_std"):
            out[key] = list(out[key]) if out[key] is not None else None
        out["lora_targets"] = list(self.lora_targets)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MosaicError(f"unknown model setting(s) {unknown}: valid ones are {sorted(known)}")
        return cls(**dict(data))

    def without_pretrained(self) -> "ModelConfig":
        """The same architecture with random initial weights, for building a model to load a checkpoint
        into (the checkpoint holds the weights; the original pretrained file need not exist any more)."""
        return dataclasses.replace(self, pretrained=False, pretrained_file=None)


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


# --------------------------------------------------------------------------- adapters
def _add_experts(model: "MosaicReID") -> tuple[tuple[LoRAExpertMixture, ...], ...]:
    cfg = model.config
    return tuple(
        attach_experts(
            model.backbone.blocks[i], cfg.lora_targets, model.schema.n_experts, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout
        )
        for i in model.expert_layers
    )


def _add_plain_lora(model: "MosaicReID") -> tuple:
    inject_plain_lora(model.backbone, model.lora_config)
    return tuple(() for _ in model.expert_layers)


def _add_nothing(model: "MosaicReID") -> tuple:
    return tuple(() for _ in model.expert_layers)


# adapter name -> how it modifies the backbone; returns the expert mixtures per expert layer.
ADAPTERS: dict[str, Callable[["MosaicReID"], tuple]] = {
    "experts": _add_experts,
    "lora": _add_plain_lora,
    "none": _add_nothing,
}

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
    ) -> Routing:
        """Routing of a batch: gates ``(B, L, E)`` (same at every expert layer) and missing groups ``(B, G)``."""
        try:
            chosen: Router = self.routers[router]
        except KeyError:
            hint = " (build with learned_router=True for 'learned')" if router == "learned" else ""
            raise MosaicError(f"unknown router {router!r} for this model: use one of {list(self.routers)}{hint}") from None
        if chosen.needs_tokens and tokens is None:
            raise MosaicError(f"router {router!r} predicts from the image: pass tokens=model.trunk(images)")
        r = chosen.route(states=states, enabled=enabled, tokens=tokens)
        # per layer so the trace can record them; repeat (not expand) so callers may edit in place
        return Routing(gates=r.gates.unsqueeze(1).repeat(1, len(self.expert_layers), 1), missing=r.missing)

    def gates(
        self,
        states: torch.Tensor | None = None,
        router: str = "oracle",
        enabled: torch.Tensor | None = None,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Gates ``(B, L, E)`` for ``states`` (B, G) state codes (``-1`` missing) under ``router``.

        ``enabled`` (G,) bool restricts which groups may switch experts on. ``oracle`` and ``none``
        need no tokens; ``learned`` needs ``tokens`` from :meth:`trunk`.
        """
        return self.route(states, router=router, enabled=enabled, tokens=tokens).gates

    def head(self, tokens: torch.Tensor, gates: torch.Tensor) -> ModelOutput:
        """Expert blocks under ``gates`` (B, L, E), final norm, CLS pooling, BNNeck, classifiers."""
        n_layers = len(self.expert_layers)
        if gates.shape != (tokens.shape[0], n_layers, self.n_experts):
            raise ValueError(
                f"gates must be (batch, {n_layers} layers, {self.n_experts} experts), got {tuple(gates.shape)}"
            )
        bb = self.backbone
        x = tokens
        for layer, (block_index, mixtures) in enumerate(zip(self.expert_layers, self._mixtures)):
            with routed(mixtures, gates[:, layer]):
                x = bb.blocks[block_index](x)
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
    ) -> ModelOutput:
        """``head(trunk(images), gates(states, router, enabled, tokens))`` on normalised images."""
        tokens = self.trunk(images)
        return self.head(tokens, self.gates(states, router=router, enabled=enabled, tokens=tokens))

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
    mean = torch.tensor(model.pixel_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(model.pixel_std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std

"""Vision Transformer backbones as named configurations over timm.

A backbone is data: a timm architecture name, the input size the ReID model runs at, and any
architecture overrides. :data:`BACKBONES` maps the names users write in configs
(``clip_vit_b16``, ``vit_small``, ``vit_micro``) to those records; :func:`create_backbone` turns
one into a headless ``timm`` ``VisionTransformer``.

Pretrained weights come from the Hugging Face hub where there is network, or from a local file
(``pretrained_file``), which timm reads through ``pretrained_cfg_overlay=dict(file=...)`` and so
works offline. When the input size differs from the one the weights were trained at (CLIP is
224x224, ReID runs at 256x128), timm's checkpoint filter resamples the position embeddings to the
new patch grid while loading.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from mosaic.core.errors import MosaicError

__all__ = ["BackboneSpec", "BACKBONES", "register_backbone", "get_backbone_spec", "create_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """One named backbone configuration.

    Attributes:
        timm_name: architecture (and pretrained tag) passed to ``timm.create_model``.
        img_size: default ``(height, width)`` of the ReID input.
        overrides: architecture keyword arguments that replace the timm defaults
            (how ``vit_micro`` shrinks a registered ViT to a CPU-sized one).
        hub_weights: whether ``pretrained=True`` without a file can fetch weights for exactly
            this architecture; ``False`` for shapes that exist only here.
        mean, std: pixel normalisation; ``None`` takes the values timm records with the weights.
        description: one line for ``--help`` and logs.
    """

    timm_name: str
    img_size: tuple[int, int]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    hub_weights: bool = True
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, spec: BackboneSpec, *, overwrite: bool = False) -> BackboneSpec:
    """Add a named backbone configuration (e.g. a ViT-L for a bigger run)."""
    if name in BACKBONES and not overwrite:
        raise MosaicError(f"backbone {name!r} is already registered: pass overwrite=True to replace it")
    BACKBONES[name] = spec
    return spec


# OpenAI trained CLIP with QuickGELU (x * sigmoid(1.702 x)); timm's plain ``vit_base_patch16_clip_224``
# builds GELU, a different network around the same weights. So the plain name means the network
# the weights were trained in, and the GELU variant has to be asked for by name.
_CLIP_B16_QUICKGELU = BackboneSpec(
    timm_name="vit_base_patch16_clip_quickgelu_224.openai",
    img_size=(256, 128),
    description="CLIP ViT-B/16 image tower (OpenAI weights) with the QuickGELU it was trained with",
)
register_backbone("clip_vit_b16", _CLIP_B16_QUICKGELU)
register_backbone("clip_vit_b16_quickgelu", _CLIP_B16_QUICKGELU)  # the explicit spelling of the same network
register_backbone(
    "clip_vit_b16_gelu",
    BackboneSpec(
        timm_name="vit_base_patch16_clip_224.openai",
        img_size=(256, 128),
        description="CLIP ViT-B/16 rebuilt with plain GELU (not the network OpenAI's weights were trained in)",
    ),
)
register_backbone(
    "vit_small",
    BackboneSpec(
        timm_name="vit_small_patch16_224",
        img_size=(256, 128),
        description="ViT-S/16 (ImageNet-21k/1k weights)",
    ),
)
register_backbone(
    # Sized for the CPU demo and tests: a training step (batch 64, Market-1501's 39 experts all
    # routed) runs at roughly 1,000 images/s on two cores (benchmarks/bench_experts.py). Patch 16
    # on 128x64 gives an 8x4 grid (33 tokens); patch 8 (129 tokens) trains about 3.5x slower.
    # MLP ratio 2 rather than 4: at width 64 the step time goes to per-op overhead and the
    # experts, and the narrower MLP buys back part of the experts' cost.
    "vit_micro",
    BackboneSpec(
        timm_name="vit_tiny_patch16_224",
        img_size=(128, 64),
        overrides=dict(patch_size=16, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
        hub_weights=False,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        description="micro ViT (dim 64, depth 4, patch 16, 128x64) for CPU demos and tests",
    ),
)


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise MosaicError(f"unknown backbone {name!r}: use one of {sorted(BACKBONES)}") from None


class _MissingKeysLog(logging.Handler):
    """Collects timm's 'Missing keys' note, which is the only trace of a file that did not fit."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Missing keys"):
            self.messages.append(message)


@contextlib.contextmanager
def _watch_timm_loading() -> Iterator[_MissingKeysLog]:
    logger = logging.getLogger("timm.models._builder")
    handler, level = _MissingKeysLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _create_with_weights(spec: BackboneSpec, kwargs: dict[str, Any], overlay: dict[str, Any], source: str):
    import timm

    with _watch_timm_loading() as log:
        # the weights overwrite every parameter (checked below), so timm's random init is skipped
        model = timm.create_model(
            spec.timm_name, pretrained=True, pretrained_cfg_overlay=overlay, weight_init="skip", **kwargs
        )
    if isinstance(getattr(model, "pretrained_cfg", None), dict):
        model.pretrained_cfg.pop("state_dict", None)  # the loaded tensors need not live on in the config
    # timm loads non-strictly whenever it drops a classifier, so weights of another architecture
    # can load "successfully" while matching nothing; refuse that. The backbone is headless, so
    # every missing key is a parameter left uninitialised.
    if log.messages:
        raise MosaicError(
            f"weights from {source} leave the backbone partly uninitialised ({log.messages[0][:200]}...): "
            "pass weights of the same architecture"
        )
    return model


def _load_file(spec: BackboneSpec, name: str, kwargs: dict[str, Any], path: Path, source_size) -> Any:
    from .weights import read_weights

    weights = read_weights(path)
    # timm's checkpoint filter takes the state dict as it is: it converts OpenAI/open_clip names
    # and resamples the position embeddings from the grid of input_size
    overlay: dict[str, Any] = dict(state_dict=weights.state_dict)
    if source_size is not None:
        overlay["input_size"] = (3, *(int(v) for v in source_size))
    source = f"{path} ({weights.description})"
    try:
        return _create_with_weights(spec, kwargs, overlay, source=source)
    except RuntimeError as exc:  # shape mismatches from load_state_dict or the resampling
        raise MosaicError(
            f"weights in {source} do not fit backbone {name!r} at {kwargs['img_size']}: {str(exc).splitlines()[0][:300]} "
            "(same architecture? if it is, pass pretrained_img_size, the size the weights were trained at)"
        ) from None


def _hub_repo(spec: BackboneSpec) -> str | None:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.timm_name)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def create_backbone(
    name: str,
    *,
    img_size: tuple[int, int] | None = None,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    pretrained_img_size: tuple[int, int] | None = None,
    drop_path: float = 0.0,
):
    """Build the headless timm ``VisionTransformer`` of a named configuration.

    Args:
        name: a key of :data:`BACKBONES`.
        img_size: ``(height, width)``; ``None`` uses the configuration's default.
        pretrained: load the hub weights of ``timm_name``: from the local Hugging Face cache when
            they are there (no hub call), else from the hub; offline, a one-line error at once.
        pretrained_file: load weights from this local file instead: OpenAI's TorchScript
            ``ViT-B-16.pt``, open_clip's ``open_clip_pytorch_model.bin``, a timm/HF
            ``.safetensors`` or any torch state dict (see :mod:`mosaic.model.weights`). Implies
            ``pretrained``; never touches the network.
        pretrained_img_size: ``(height, width)`` the file's weights were trained at, which fixes
            the patch grid their position embeddings are resampled from. A flat list of position
            embeddings cannot say whether it was 8x4 or 4x8, and timm would otherwise assume the
            hub resolution (square). ``None``: the hub resolution for configurations with hub
            weights, the configuration's default ``img_size`` for those without (whose files come
            from models trained here).
        drop_path: stochastic-depth rate, growing linearly over the blocks.

    Returns:
        A ``timm.models.VisionTransformer`` with ``num_classes=0`` (no classifier head); its
        ``pretrained_cfg`` carries the normalisation the weights expect.
    """
    import timm

    spec = get_backbone_spec(name)
    size = tuple(int(s) for s in (img_size or spec.img_size))
    if len(size) != 2 or min(size) <= 0:
        raise MosaicError(f"img_size must be (height, width) with positive values, got {img_size!r}")
    patch = int(spec.overrides.get("patch_size", 16))
    if size[0] % patch or size[1] % patch:
        raise MosaicError(
            f"img_size {size} is not a multiple of the patch size {patch} of backbone {name!r}: "
            f"use e.g. ({size[0] // patch * patch or patch}, {size[1] // patch * patch or patch})"
        )
    kwargs: dict[str, Any] = dict(spec.overrides, img_size=size, num_classes=0, drop_path_rate=float(drop_path))

    if pretrained_file is not None:
        source_size = pretrained_img_size or (None if spec.hub_weights else spec.img_size)
        return _load_file(spec, name, kwargs, Path(pretrained_file).expanduser(), source_size)

    if pretrained:
        if not spec.hub_weights:
            raise MosaicError(
                f"backbone {name!r} has no published weights: train from scratch (pretrained=False) "
                "or pass pretrained_file with weights of the same shape"
            )
        from .weights import OFFLINE_FIXES, cached_hub_file, hub_offline, hub_reachable

        # The cache first: a cached file loads like a local one, with no hub call at all. Without
        # it, one short connection attempt decides, instead of a minute of hub retries.
        repo = _hub_repo(spec)
        cached = cached_hub_file(repo) if repo else None
        if cached is not None:
            return _load_file(spec, name, kwargs, cached, pretrained_img_size)
        if hub_offline() or not hub_reachable():
            reason = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub cannot be reached"
            raise MosaicError(
                f"no pretrained weights for {spec.timm_name}: they are not in the local cache and {reason}: {OFFLINE_FIXES}"
            )
        overlay = dict(input_size=(3, *pretrained_img_size)) if pretrained_img_size else {}
        try:
            return _create_with_weights(spec, kwargs, overlay, source=spec.timm_name)
        except MosaicError:
            raise
        except Exception as exc:  # network, hub and cache failures arrive as many types
            raise MosaicError(
                f"could not fetch pretrained weights for {spec.timm_name} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}): {OFFLINE_FIXES}"
            ) from None

    return timm.create_model(spec.timm_name, pretrained=False, **kwargs)


def normalisation_of(model, spec: BackboneSpec) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pixel mean and std for a backbone: the spec's values, else those timm stores with the weights."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = spec.mean or tuple(float(v) for v in cfg.get("mean", (0.5, 0.5, 0.5)))
    std = spec.std or tuple(float(v) for v in cfg.get("std", (0.5, 0.5, 0.5)))
    return tuple(mean), tuple(std)

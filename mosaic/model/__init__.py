"""The model: timm ViT backbones, LoRA attribute experts, routers and the ReID module.

Typical use::

    from mosaic.model import ModelConfig, build_model, normalize_images
    model = build_model(ModelConfig(backbone="vit_micro"), schema, num_classes=751)
    out = model(normalize_images(uint8_images, model), states, router="oracle")

Importing this package imports torch; the torch-free layers never import it.
"""

from .backbones import BACKBONES, BackboneSpec, create_backbone, get_backbone_spec, register_backbone
from .expert_block import expert_block_forward
from .experts import LORA_TARGETS, LoRAExpertMixture, attach_experts, inject_plain_lora, lora_config
from .reid import ADAPTERS, ModelConfig, ModelOutput, MosaicReID, build_model, normalize_images, parameter_part
from .routers import (
    ROUTERS,
    LearnedRouter,
    NullRouter,
    OracleRouter,
    Router,
    Routing,
    attribute_accuracy,
    attribute_loss,
    register_router,
    state_accuracy,
)

__all__ = [
    "ADAPTERS",
    "BACKBONES",
    "LORA_TARGETS",
    "ROUTERS",
    "BackboneSpec",
    "LearnedRouter",
    "LoRAExpertMixture",
    "ModelConfig",
    "ModelOutput",
    "MosaicReID",
    "NullRouter",
    "OracleRouter",
    "Router",
    "Routing",
    "attach_experts",
    "attribute_accuracy",
    "state_accuracy",
    "attribute_loss",
    "build_model",
    "create_backbone",
    "expert_block_forward",
    "get_backbone_spec",
    "inject_plain_lora",
    "lora_config",
    "normalize_images",
    "parameter_part",
    "register_backbone",
    "register_router",
]

"""Backbone registry: named timm configurations, offline pretrained files, position-embedding resampling."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import MosaicError
from mosaic.model import BACKBONES, ModelConfig, build_model, create_backbone
from mosaic.core.schema import AttributeSchema

SCHEMA = AttributeSchema.from_dict(
    {"name": "toy", "groups": [{"name": "gender", "family": "intrinsic", "states": ["male", "female"]}]}
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never download: any attempt fails fast instead of hanging on a socket.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_registry_names_and_specs():
    assert {"clip_vit_b16", "vit_small", "vit_micro"} <= set(BACKBONES)
    assert BACKBONES["clip_vit_b16"].timm_name == "vit_base_patch16_clip_quickgelu_224.openai"
    assert BACKBONES["clip_vit_b16"].img_size == (256, 128) == BACKBONES["vit_small"].img_size
    with pytest.raises(MosaicError, match="unknown backbone"):
        create_backbone("resnet50")


def test_vit_micro_shape():
    bb = create_backbone("vit_micro")
    assert (bb.embed_dim, len(bb.blocks), bb.patch_embed.grid_size) == (64, 4, (8, 4))
    assert bb.num_classes == 0


def test_clip_vit_b16_builds_at_256x128_without_network():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="clip_vit_b16", expert_blocks=1, lora_targets=("qkv",)), SCHEMA, 3).eval()
    assert model.img_size == (256, 128) and model.embed_dim == 768
    assert model.backbone.patch_embed.grid_size == (16, 8) and model.backbone.pos_embed.shape == (1, 1 + 128, 768)
    assert model.pixel_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # CLIP's, from timm
    assert model.pixel_std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 128), torch.tensor([[1]]))
    assert out.bn_features.shape == (1, 768) and torch.isfinite(out.bn_features).all()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_file_loads_and_resamples_position_embeddings(tmp_path, suffix):
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    source = create_backbone("vit_micro")  # 128x64: an 8x4 patch grid
    path = tmp_path / f"micro{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)

    same = create_backbone("vit_micro", pretrained_file=path)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(same.state_dict()[key], value)

    bigger = create_backbone("vit_micro", img_size=(256, 128), pretrained_file=path)  # 16x8 grid
    assert bigger.pos_embed.shape == (1, 1 + 16 * 8, 64)
    expected = resample_abs_pos_embed(source.pos_embed.detach(), new_size=(16, 8), old_size=(8, 4), num_prefix_tokens=1)
    torch.testing.assert_close(bigger.pos_embed.detach(), expected)
    torch.testing.assert_close(bigger.pos_embed[:, 0], source.pos_embed[:, 0])  # the class token's entry is kept
    torch.testing.assert_close(bigger.blocks[3].mlp.fc2.weight, source.blocks[3].mlp.fc2.weight)

    # through the model config, the same file path
    model = build_model(ModelConfig(img_size=(256, 128), pretrained_file=str(path)), SCHEMA, 3)
    torch.testing.assert_close(model.backbone.pos_embed, bigger.pos_embed)


def test_pretrained_mistakes_are_user_errors(tmp_path):
    with pytest.raises(MosaicError, match="does not exist"):
        create_backbone("vit_micro", pretrained_file=tmp_path / "nope.safetensors")
    with pytest.raises(MosaicError, match="no published weights"):
        create_backbone("vit_micro", pretrained=True)
    with pytest.raises(MosaicError, match="multiple of the patch size"):
        create_backbone("vit_micro", img_size=(100, 64))

    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 3).state_dict(), other)  # nothing a ViT can use
    with pytest.raises(MosaicError, match="partly uninitialised"):
        create_backbone("vit_micro", pretrained_file=other)
    incomplete = tmp_path / "incomplete.pth"
    state = create_backbone("vit_micro").state_dict()
    del state["norm.weight"]
    torch.save(state, incomplete)
    with pytest.raises(MosaicError, match="norm.weight"):
        create_backbone("vit_micro", pretrained_file=incomplete)
    import timm

    wider = tmp_path / "wider.pth"  # same layout, embed_dim 96 instead of 64
    torch.save(timm.create_model("vit_tiny_patch16_224", embed_dim=96, depth=4, num_heads=4, num_classes=0).state_dict(), wider)
    with pytest.raises(MosaicError, match="do not fit"):
        create_backbone("vit_micro", pretrained_file=wider)

"""Weight files in every common container load into the QuickGELU CLIP layout; offline fails fast.

A tiny model of CLIP ViT-B/16's structure (same timm architecture, narrower and shallower) is
saved with random weights the way each source ships them: OpenAI's TorchScript archive,
open_clip's pickled ``.bin``, timm's safetensors. Each must load to exactly the same backbone.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from mosaic.core.errors import MosaicError
from mosaic.model import BACKBONES, BackboneSpec, create_backbone, register_backbone

TINY_CLIP = "clip_tiny_for_tests"
ARCH = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(autouse=True)
def tiny_clip_backbone(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may download
    spec = BackboneSpec(
        timm_name="vit_base_patch16_clip_quickgelu_224.openai", img_size=(64, 32), overrides=ARCH, hub_weights=True
    )
    register_backbone(TINY_CLIP, spec, overwrite=True)
    yield
    BACKBONES.pop(TINY_CLIP, None)


@pytest.fixture(scope="module")
def source():
    """The 'published' model: the CLIP architecture at CLIP's 224x224, random weights."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_base_patch16_clip_quickgelu_224", num_classes=0, **ARCH).eval()


def openai_state_dict(model) -> dict[str, torch.Tensor]:
    """timm names -> OpenAI CLIP names, the whole CLIP model as OpenAI and open_clip save it."""
    out = {}
    swaps = [
        ("patch_embed.proj", "conv1"),
        ("blocks.", "transformer.resblocks."),
        ("norm_pre", "ln_pre"),
        ("norm1", "ln_1"),
        ("norm2", "ln_2"),
        ("attn.qkv.", "attn.in_proj_"),
        ("attn.proj", "attn.out_proj"),
        ("mlp.fc1", "mlp.c_fc"),
        ("mlp.fc2", "mlp.c_proj"),
    ]
    for key, value in model.state_dict().items():
        if key == "cls_token":
            key, value = "class_embedding", value.reshape(-1)
        elif key == "pos_embed":
            key, value = "positional_embedding", value[0]
        elif key.startswith("norm."):
            key = key.replace("norm.", "ln_post.")
        else:
            for old, new in swaps:
                key = key.replace(old, new)
        out[f"visual.{key}"] = value.clone()
    width = model.embed_dim
    out["visual.proj"] = torch.randn(width, 16)
    # the text tower rides along in every CLIP file; the image backbone must ignore it
    out["token_embedding.weight"] = torch.randn(50, 16)
    out["positional_embedding"] = torch.randn(8, 16)
    out["text_projection"] = torch.randn(16, 16)
    out["logit_scale"] = torch.tensor(4.6)
    return out


class _Holder(nn.Module):
    """A module whose state dict has exactly the given (dotted) names, for a TorchScript archive."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            node: nn.Module = self
            for part in path:
                if not hasattr(node, part):
                    node.add_module(part, nn.Module())
                node = getattr(node, part)
            node.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_torchscript(state: dict[str, torch.Tensor], path) -> None:
    import warnings

    with warnings.catch_warnings():  # TorchScript is deprecated, and still how OpenAI ships CLIP
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(_Holder(state), torch.zeros(1)), str(path))


def expected_backbone_state(source) -> dict[str, torch.Tensor]:
    from timm.layers import resample_abs_pos_embed

    expected = {k: v for k, v in source.state_dict().items()}
    # 224x224 -> the 64x32 ReID input: 14x14 -> 4x2 position grid, the class token's entry kept
    expected["pos_embed"] = resample_abs_pos_embed(
        source.pos_embed.detach(), new_size=(4, 2), old_size=(14, 14), num_prefix_tokens=1
    )
    return expected


def assert_loaded(backbone, source) -> None:
    state = backbone.state_dict()
    for key, value in expected_backbone_state(source).items():
        torch.testing.assert_close(state[key], value, msg=key)
    assert type(backbone.blocks[0].mlp.act).__name__ == "QuickGELU"


def test_the_plain_clip_name_is_the_quickgelu_network_openai_trained():
    assert BACKBONES["clip_vit_b16"] == BACKBONES["clip_vit_b16_quickgelu"]
    assert "quickgelu" in BACKBONES["clip_vit_b16"].timm_name
    assert "quickgelu" not in BACKBONES["clip_vit_b16_gelu"].timm_name
    for config in ("market1501_clip_vitb16", "dukemtmc_clip_vitb16", "market1501_clip_vitb16_baseline"):
        from mosaic.train.config import load_config

        cfg = load_config(config)
        assert "quickgelu" in BACKBONES[cfg.model.backbone].timm_name, config


def test_openai_torchscript_archive_loads(tmp_path, source):
    from mosaic.model.weights import read_weights

    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(openai_state_dict(source), path)
    weights = read_weights(path)
    assert (weights.container, weights.layout) == ("torchscript", "openai-clip")
    assert_loaded(create_backbone(TINY_CLIP, pretrained_file=path), source)


def test_open_clip_bin_loads(tmp_path, source):
    from mosaic.model.weights import read_weights

    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(openai_state_dict(source), path)
    assert (read_weights(path).container, read_weights(path).layout) == ("torch-pickle", "openai-clip")
    assert_loaded(create_backbone(TINY_CLIP, pretrained_file=path), source)


@pytest.mark.parametrize("layout", ["timm", "openai-clip"])
def test_safetensors_load(tmp_path, source, layout):
    from safetensors.torch import save_file

    from mosaic.model.weights import read_weights

    path = tmp_path / "model.safetensors"
    state = source.state_dict() if layout == "timm" else openai_state_dict(source)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert (read_weights(path).container, read_weights(path).layout) == ("safetensors", layout)
    assert_loaded(create_backbone(TINY_CLIP, pretrained_file=path), source)


def test_a_local_file_never_calls_the_hub(tmp_path, source, monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("a hub call was made although a local file was given")

    for name in ("hf_hub_download", "try_to_load_from_cache"):
        monkeypatch.setattr(huggingface_hub, name, refuse)
    monkeypatch.setattr("mosaic.model.weights.hub_reachable", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(openai_state_dict(source), path)
    assert_loaded(create_backbone(TINY_CLIP, pretrained_file=path), source)


def test_a_loading_error_names_file_format_and_missing_keys(tmp_path, source):
    state = openai_state_dict(source)
    del state["visual.ln_post.weight"], state["visual.transformer.resblocks.1.mlp.c_fc.bias"]
    path = tmp_path / "ViT-B-16.pt"
    save_torchscript(state, path)
    with pytest.raises(MosaicError) as info:
        create_backbone(TINY_CLIP, pretrained_file=path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "torchscript" in message and "openai-clip" in message
    assert "norm.weight" in message and "blocks.1.mlp.fc1.bias" in message

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a weights file at all")
    with pytest.raises(MosaicError, match=r"cannot read weights file .*garbage\.bin"):
        create_backbone(TINY_CLIP, pretrained_file=garbage)

    transformers = tmp_path / "hf.bin"
    torch.save({"vision_model.embeddings.class_embedding": torch.zeros(32)}, transformers)
    with pytest.raises(MosaicError, match="transformers CLIPModel layout"):
        create_backbone(TINY_CLIP, pretrained_file=transformers)


@pytest.mark.parametrize("offline_flag", [True, False])
def test_without_file_cache_or_network_the_error_is_one_line_and_fast(tmp_path, monkeypatch, offline_flag):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # no cached weights
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    if not offline_flag:
        monkeypatch.delenv("HF_HUB_OFFLINE")
    import huggingface_hub  # noqa: F401  imports are not what is timed (timm alone can take 20 s on a busy machine)
    import timm  # noqa: F401

    start = time.perf_counter()
    with pytest.raises(MosaicError) as info:
        create_backbone(TINY_CLIP, pretrained=True)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 10.0  # the hub path retries for about a minute; the probe answers at once
    assert "\n" not in message
    assert "model.pretrained_file=PATH" in message and "HF_HUB_OFFLINE" in message and "cache" in message


def test_a_cached_hub_file_loads_without_a_hub_call(tmp_path, source, monkeypatch):
    from safetensors.torch import save_file

    repo = "timm/vit_base_patch16_clip_224.openai"
    home = tmp_path / "hf"
    snapshot = home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (home / "hub" / f"models--{repo.replace('/', '--')}" / "refs").mkdir()
    (home / "hub" / f"models--{repo.replace('/', '--')}" / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr("mosaic.model.weights.hub_reachable", lambda *a, **k: pytest.fail("probed the network"))
    assert_loaded(create_backbone(TINY_CLIP, pretrained=True), source)

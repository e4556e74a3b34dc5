"""MosaicReID on vit_micro: the trunk/gates/head split, adapters, freezing, checkpoints."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import MosaicError
from mosaic.model import LoRAExpertMixture, ModelConfig, ModelOutput, build_model, normalize_images
from mosaic.core.schema import AttributeSchema, load_schema

SCHEMA = AttributeSchema.from_dict(
    {
        "name": "toy",
        "groups": [
            {"name": "gender", "family": "intrinsic", "states": ["male", "female"]},
            {"name": "upcolour", "family": "extrinsic-colour", "states": ["black", "white", "red", "other"]},
            {"name": "backpack", "family": "extrinsic-accessory", "states": ["no", "yes"]},
        ],
    }
)
STATES = torch.tensor([[1, 2, 0], [0, -1, 1], [-1, -1, -1], [1, 3, 1]])


def _model(**overrides):
    torch.manual_seed(0)
    model = build_model(ModelConfig(**overrides), SCHEMA, num_classes=7)
    with torch.no_grad():  # random expert B factors, so experts change the output
        for layer in model.mixtures:
            for m in layer:
                m.lora_B.normal_(std=0.2)
    return model


def _images(model, n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return normalize_images(torch.randint(0, 256, (n, 3, *model.img_size), dtype=torch.uint8, generator=gen), model)


@pytest.fixture(scope="module")
def model():
    return _model().eval()


def test_forward_outputs_and_published_attributes(model):
    out = model(_images(model), STATES)
    assert isinstance(out, ModelOutput)
    assert out.features.shape == (4, 64) and out.bn_features.shape == (4, 64) and out.logits.shape == (4, 7)
    assert {k: tuple(v.shape) for k, v in out.attr_logits.items()} == {"gender": (4, 2), "upcolour": (4, 4), "backpack": (4, 2)}
    assert model.expert_layers == (2, 3) and model.img_size == (128, 64) and model.num_classes == 7
    assert model.schema is SCHEMA and model.config.backbone == "vit_micro"
    assert model.pixel_mean == (0.5, 0.5, 0.5) and model.pixel_std == (0.5, 0.5, 0.5)
    assert all(isinstance(m, LoRAExpertMixture) for layer in model.mixtures for m in layer)
    assert [len(layer) for layer in model.mixtures] == [4, 4]


@pytest.mark.parametrize("router", ["oracle", "learned", "none"])
def test_trunk_then_head_equals_forward(model, router):
    x = _images(model)
    with torch.no_grad():
        tokens = model.trunk(x)
        split = model.head(tokens, model.gates(STATES, router=router, tokens=tokens))
        whole = model(x, STATES, router=router)
    assert tokens.shape == (4, 1 + 8 * 4, 64)
    torch.testing.assert_close(split.bn_features, whole.bn_features)
    torch.testing.assert_close(split.logits, whole.logits)


def test_gates_per_layer_and_routing_changes_the_features(model):
    gates = model.gates(STATES)
    assert gates.shape == (4, 2, SCHEMA.n_experts)
    torch.testing.assert_close(gates[:, 0], gates[:, 1])
    gates[:, 0, 0] = 5.0  # a real copy per layer: editable in place
    assert gates[0, 1, 0] != 5.0
    routing = model.route(STATES)
    assert routing.n_missing == 4
    x = _images(model)
    with torch.no_grad():
        oracle = model(x, STATES).bn_features
        none = model(x, STATES, router="none").bn_features
        drop = model(x, STATES, enabled=torch.tensor([True, False, True])).bn_features
    assert not torch.allclose(oracle, none)
    assert not torch.allclose(oracle[0], drop[0])  # sample 0 had an upcolour expert
    torch.testing.assert_close(oracle[2], none[2])  # sample 2 has no labels: routed nowhere


def test_gradients_reach_only_the_routed_experts():
    model = _model().train()
    enabled = torch.tensor([True, False, False])  # only gender experts may switch on
    states = torch.tensor([[1, 2, 0], [1, 1, 1]])  # both samples female
    model(_images(model, 2), states, enabled=enabled).features.square().sum().backward()
    female = SCHEMA.expert_slice("gender").start + 1
    for layer in model.mixtures:
        for m in layer:
            grad_norm = m.lora_A.grad.abs().sum(dim=(1, 2)) + m.lora_B.grad.abs().sum(dim=(1, 2))
            assert grad_norm[female] > 0
            assert torch.count_nonzero(torch.cat([grad_norm[:female], grad_norm[female + 1 :]])) == 0


def test_plain_lora_baseline_through_peft():
    from peft.tuners.lora import LoraLayer

    model = _model(adapter="lora", lora_targets=("qkv", "fc1"), freeze_backbone=True)
    lora_layers = {n for n, m in model.backbone.named_modules() if isinstance(m, LoraLayer)}
    assert lora_layers == {"blocks.2.attn.qkv", "blocks.2.mlp.fc1", "blocks.3.attn.qkv", "blocks.3.mlp.fc1"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("routers.", "bnneck.", "classifier.")) for n in trainable)
    assert "bnneck.bias" not in trainable
    counts = model.parameter_counts()
    assert counts["experts"] == 2 * 4 * ((64 + 3 * 64) + (64 + 2 * 64))  # rank 4 on qkv and fc1, 2 blocks
    out = model.eval()(_images(model), STATES)
    assert out.logits.shape == (4, 7)


def test_freezing_and_parameter_counts():
    model = _model(freeze_backbone=True, lora_targets=("qkv",))
    trainable = model.parameter_counts(trainable_only=True)
    total = model.parameter_counts()
    assert trainable["backbone"] == 0 and trainable["experts"] == total["experts"] > 0
    assert total["experts"] == 2 * SCHEMA.n_experts * 4 * (64 + 192)
    assert total["total"] == sum(p.numel() for p in model.parameters())
    assert trainable["head"] == total["head"] - 64  # the BNNeck bias stays fixed
    assert _model(adapter="none").parameter_counts()["experts"] == 0


def test_model_config_round_trip_and_validation():
    cfg = ModelConfig(img_size=[128, 64], lora_targets=["qkv"], adapter="lora", pretrained_file="w.pth")
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.img_size == (128, 64) and again.lora_targets == ("qkv",)
    bare = cfg.without_pretrained()
    assert (bare.pretrained, bare.pretrained_file, bare.adapter) == (False, None, "lora")
    with pytest.raises(MosaicError, match="unknown model setting"):
        ModelConfig.from_dict({**cfg.to_dict(), "lora_rnak": 3})
    for bad in (dict(adapter="prompt"), dict(backbone="vit_huge"), dict(lora_targets=("ffn",)), dict(expert_blocks=0)):
        with pytest.raises(MosaicError):
            ModelConfig(**bad)
    with pytest.raises(MosaicError, match="exceeds the 4 blocks"):
        build_model(ModelConfig(expert_blocks=5), SCHEMA, 7)


def test_state_dict_round_trip_and_schema_guard(model, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    state = torch.load(path, weights_only=True)
    from peft import PeftConfig

    stored = PeftConfig.from_peft_type(**state["_extra_state"]["lora_config"])  # peft reads it back
    assert (stored.r, stored.lora_alpha, set(stored.target_modules)) == (4, 8.0, set(model.lora_config.target_modules))
    twin = build_model(ModelConfig(), SCHEMA, 7).eval()
    twin.load_state_dict(state)
    x = _images(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(x, STATES).bn_features, model(x, STATES).bn_features)

    reordered = AttributeSchema.from_dict({**SCHEMA.to_dict(), "groups": SCHEMA.to_dict()["groups"][::-1]})
    with pytest.raises(MosaicError, match="attribute schema"):
        build_model(ModelConfig(), reordered, 7).load_state_dict(state)
    with pytest.raises(MosaicError, match="lora_alpha"):
        build_model(ModelConfig(lora_alpha=16.0), SCHEMA, 7).load_state_dict(state)


def test_learned_router_is_optional_and_inputs_are_checked():
    model = _model(learned_router=False).eval()
    x = _images(model)
    assert model(x, STATES).attr_logits is None
    with pytest.raises(MosaicError, match="learned_router=True"):
        model(x, STATES, router="learned")
    with pytest.raises(MosaicError, match="pass tokens"):
        _model().gates(STATES, router="learned")
    with pytest.raises(MosaicError, match="resize them"):
        model(torch.zeros(1, 3, 64, 32), STATES[:1])


def test_normalize_images_matches_mean_and_std(model):
    images = torch.randint(0, 256, (2, 3, 128, 64), dtype=torch.uint8)
    x = normalize_images(images, model)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, (images.float() / 255 - 0.5) / 0.5)
    torch.testing.assert_close(normalize_images(images.float() / 255, model), x)
    with pytest.raises(TypeError):
        normalize_images(images.int(), model)


def test_real_market_schema_builds_one_expert_per_state():
    schema = load_schema("market1501")
    model = build_model(ModelConfig(), schema, num_classes=751)
    assert model.gates(torch.zeros(1, len(schema.groups), dtype=torch.long)).shape == (1, 2, schema.n_experts)
    assert model.mixtures[0][0].lora_A.shape == (schema.n_experts, 4, 64)


@pytest.mark.gpu
def test_cuda_bf16_step_and_routing_on_device():
    model = _model(learned_router=True).cuda().train()
    x, states = _images(model).cuda(), STATES.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x, states, enabled=torch.tensor([True, True, False], device="cuda"))
        loss = out.logits.float().logsumexp(1).mean() + out.features.float().square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    backpack = SCHEMA.expert_slice("backpack")
    for layer in model.mixtures:
        for m in layer:
            assert m.lora_A.grad[backpack].abs().sum() == 0 and m.lora_B.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        tokens = model.trunk(x)
        torch.testing.assert_close(model.head(tokens, model.gates(states, router="learned", tokens=tokens)).bn_features,
                                   model(x, states, router="learned").bn_features)


def test_registered_router_is_offered_by_new_models():
    from mosaic.model import ROUTERS, Router, Routing, register_router

    class Everything(Router):
        """Every expert of every enabled group on (a capacity probe)."""

        def route(self, states=None, enabled=None, tokens=None):
            mask = self.enabled_mask(enabled, states.device)
            per_expert = torch.repeat_interleave(mask, self.n_states)
            gates = per_expert.float().expand(states.shape[0], -1)
            return Routing(gates=gates, missing=torch.zeros(states.shape, dtype=torch.bool))

    register_router("everything", Everything)
    try:
        model = _model().eval()
        gates = model.gates(STATES, router="everything", enabled=torch.tensor([True, False, True]))
        assert gates.shape == (4, 2, 8) and gates[0, 0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]
        with pytest.raises(TypeError):
            register_router("bad", object)
    finally:
        ROUTERS.pop("everything")


@pytest.mark.parametrize("train", [False, True])
def test_forward_makes_no_host_sync_once_the_codes_are_checked(train):
    from syncs import count_syncs

    model = _model().train(train)
    model.routers["oracle"].check_codes(STATES.numpy())
    images = torch.randint(0, 256, (4, 3, *model.img_size), dtype=torch.uint8)
    with count_syncs() as syncs, torch.set_grad_enabled(train):
        out = model(normalize_images(images, model), STATES, router="oracle", check_codes=False)
        if train:
            (out.logits.sum() + out.features.sum()).backward()
    assert syncs.events == []


def test_head_on_the_enabled_experts_equals_the_full_head(model):
    x, enabled = _images(model), torch.tensor([False, True, True])
    with torch.no_grad():
        tokens = model.trunk(x)
        gates = model.gates(STATES, enabled=enabled)
        active = model.active_experts(enabled)
        assert active == tuple(range(2, 8))
        full, sliced = model.head(tokens, gates), model.head(tokens, gates, active)
        torch.testing.assert_close(sliced.bn_features, full.bn_features, atol=1e-6, rtol=1e-6)
        off = model.gates(STATES, router="none")
        assert torch.equal(model.head(tokens, off, ()).bn_features, model.head(tokens, off).bn_features)

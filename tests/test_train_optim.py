"""Parameter groups: which parameters learn at which rate and with which weight decay."""

from __future__ import annotations

import pytest
import torch

from mosaic.model import ModelConfig, build_model
from mosaic.core.schema import load_schema
from mosaic.train.config import OptimConfig, load_config
from mosaic.train.optim import build_optimizer, build_scheduler, parameter_groups

LR, NEW_LR, WD = 5e-6, 5e-4, 1e-4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=True, router_hidden=8)
    return build_model(config, load_schema("market1501"), num_classes=10)


def settings_by_name(model, config: OptimConfig) -> dict[str, tuple[float, float, str]]:
    groups = parameter_groups(model, config)
    ids = {id(p): name for name, p in model.named_parameters()}
    out = {}
    for group in groups:
        for p in group["params"]:
            assert ids[id(p)] not in out, "a parameter sits in two groups"
            out[ids[id(p)]] = (group["lr"], group["weight_decay"], group["name"])
    return out


def test_each_parameter_gets_its_part_rate_bias_factor_and_decay(model):
    config = OptimConfig(name="adam", lr=LR, new_lr=NEW_LR, bias_lr_factor=2.0, weight_decay=WD)
    got = settings_by_name(model, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(got) == trainable  # every trainable parameter is in exactly one group
    assert "bnneck.bias" not in got  # frozen at zero (BNNeck)

    expected = {
        # pretrained backbone: the fine-tuning rate
        "backbone.blocks.0.attn.qkv.weight": (LR, WD),
        "backbone.blocks.3.mlp.fc2.base.weight": (LR, WD),  # the frozen-shape base under the experts
        "backbone.patch_embed.proj.weight": (LR, WD),
        "backbone.blocks.0.attn.qkv.bias": (2 * LR, 0.0),
        "backbone.blocks.0.norm1.weight": (LR, 0.0),
        "backbone.norm.weight": (LR, 0.0),
        "backbone.pos_embed": (LR, 0.0),
        "backbone.cls_token": (LR, 0.0),
        # parts initialised here: their own, larger rate
        "classifier.weight": (NEW_LR, WD),
        "bnneck.weight": (NEW_LR, 0.0),
        "routers.learned.heads.gender.0.weight": (NEW_LR, WD),
        "routers.learned.heads.gender.0.bias": (2 * NEW_LR, 0.0),
        "routers.learned.norm.weight": (NEW_LR, 0.0),
    }
    for name, (lr, wd) in expected.items():
        assert got[name][:2] == pytest.approx((lr, wd)), name
    experts = [n for n in got if "lora_" in n]
    assert experts and all(got[n][:2] == pytest.approx((NEW_LR, WD)) for n in experts)
    assert all(got[n][0] == pytest.approx(LR) for n in got if n.startswith("backbone.") and "lora_" not in n and not n.endswith(".bias"))


def test_defaults_keep_one_rate_and_decay_can_be_kept_everywhere(model):
    got = settings_by_name(model, OptimConfig(lr=1e-3, weight_decay=0.05, no_decay_norm_bias=False))
    assert {v[:2] for v in got.values()} == {(1e-3, 0.05)}


def test_the_schedule_scales_every_group_alike_and_the_optimiser_is_the_named_one(model):
    config = OptimConfig(name="adam", lr=LR, new_lr=NEW_LR, bias_lr_factor=2.0, weight_decay=WD,
                         epochs=3, warmup_epochs=1, schedule="step", milestones=(2.0,), gamma=0.1)
    optimizer = build_optimizer(model, config)
    assert type(optimizer) is torch.optim.Adam
    scheduler, total = build_scheduler(optimizer, config, steps_per_epoch=4)
    base = {g["name"]: g["initial_lr"] for g in optimizer.param_groups}
    for _ in range(9):  # past the warm-up and the milestone at epoch 2
        optimizer.step()
        scheduler.step()
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(base[group["name"]] * 0.1)
    assert base["new"] / base["backbone"] == pytest.approx(NEW_LR / LR)


def test_the_clip_configs_use_the_clip_reid_recipe():
    for name in ("market1501_clip_vitb16", "dukemtmc_clip_vitb16", "market1501_clip_vitb16_baseline"):
        cfg = load_config(name)
        o = cfg.optim
        assert (o.name, o.lr, o.bias_lr_factor, o.epochs) == ("adam", 5e-6, 2.0, 60), name
        assert o.new_lr is not None and o.new_lr >= 20 * o.lr, name
        assert (o.schedule, tuple(o.milestones)) == ("step", (30.0, 50.0)), name
        assert (cfg.augment.pad, cfg.augment.flip_prob, cfg.augment.erase_prob) == (10, 0.5, 0.5), name
        assert (cfg.sampler.p, cfg.sampler.k) == (16, 4), name
    assert load_config("market1501_clip_vitb16_baseline").model.adapter == "none"

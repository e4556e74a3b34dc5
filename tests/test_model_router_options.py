"""The learned router's options: detached input (default), soft gates, and the untrainable-router guard."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import MosaicError
from mosaic.model import ModelConfig, attribute_loss, build_model
from mosaic.core.schema import load_schema
from mosaic.train.config import load_config

SCHEMA = load_schema("market1501")


def model_with(**settings):
    torch.manual_seed(0)
    config = ModelConfig(backbone="vit_micro", expert_blocks=2, learned_router=True, **settings)
    return build_model(config, SCHEMA, num_classes=5)


def random_states(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.stack([torch.randint(0, len(group.states), (n,), generator=g) for group in SCHEMA.groups], dim=1)


def trunk_grad_from_attribute_loss(model) -> float:
    images = torch.randn(4, 3, *model.img_size)
    states = random_states(4)
    out = model(images, states, router="oracle")
    model.zero_grad(set_to_none=True)
    attribute_loss(out.attr_logits, states).backward()
    trunk = [p for i in range(model.expert_layers[0]) for p in model.backbone.blocks[i].parameters()]
    trunk += [model.backbone.patch_embed.proj.weight, model.backbone.pos_embed]
    return sum(float(p.grad.abs().sum()) for p in trunk if p.grad is not None)


def test_by_default_the_attribute_loss_trains_the_router_heads_and_not_the_trunk():
    model = model_with()
    assert model.config.router_detach
    assert trunk_grad_from_attribute_loss(model) == 0.0
    heads = model.learned_router.heads
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in heads.parameters())


def test_router_detach_false_lets_the_attribute_loss_train_the_trunk():
    assert trunk_grad_from_attribute_loss(model_with(router_detach=False)) > 0.0


def test_soft_gates_are_each_groups_state_probabilities_and_hard_gates_their_argmax():
    images = torch.randn(3, 3, 128, 64)
    soft, hard = model_with(router_gates="soft").eval(), model_with(router_gates="hard").eval()
    with torch.no_grad():
        tokens = soft.trunk(images)
        soft_gates = soft.gates(router="learned", tokens=tokens)[:, 0]
        hard_gates = hard.gates(router="learned", tokens=tokens)[:, 0]
        logits = soft.learned_router.logits(tokens)
    for g, (name, lg) in enumerate(logits.items()):
        start = SCHEMA.expert_offsets[g]
        piece = slice(start, start + lg.shape[1])
        torch.testing.assert_close(soft_gates[:, piece], lg.softmax(dim=1))
        torch.testing.assert_close(hard_gates[:, piece], torch.nn.functional.one_hot(lg.argmax(1), lg.shape[1]).float())
    # a disabled group switches its experts off under soft gates too
    enabled = torch.ones(len(SCHEMA.groups), dtype=torch.bool)
    enabled[0] = False
    with torch.no_grad():
        off = soft.gates(router="learned", tokens=tokens, enabled=enabled)[:, 0]
    n0 = len(SCHEMA.groups[0].states)
    assert not off[:, :n0].any() and torch.allclose(off[:, n0:], soft_gates[:, n0:])


def test_unknown_gate_mode_is_a_user_error():
    with pytest.raises(MosaicError, match="router_gates must be one of"):
        ModelConfig(router_gates="sparse")


def test_a_learned_router_without_attribute_loss_is_refused():
    # the router would never learn, and DistributedDataParallel stops on its gradient-free parameters
    with pytest.raises(MosaicError, match="attribute_weight is 0"):
        load_config(None, ["model.learned_router=true", "loss.attribute_weight=0"])
    load_config(None, ["model.learned_router=false", "loss.attribute_weight=0"])

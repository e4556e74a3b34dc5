"""LoRA expert mixture: exact arithmetic, peft numerics, and where gradients go."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mosaic.model.expert_block import expert_block_forward
from mosaic.model.experts import LoRAExpertMixture, attach_experts, lora_config

IN, OUT, RANK, ALPHA, N_EXPERTS = 12, 10, 3, 6.0, 5


@pytest.fixture
def mixture() -> LoRAExpertMixture:
    torch.manual_seed(0)
    m = LoRAExpertMixture(nn.Linear(IN, OUT), N_EXPERTS, RANK, ALPHA)
    with torch.no_grad():  # B starts at zero; make every expert do something
        m.lora_B.normal_()
    return m


def _explicit(m: LoRAExpertMixture, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """The definition, one sample and one expert at a time."""
    rows = []
    for b in range(x.shape[0]):
        y = x[b] @ m.base.weight.T + m.base.bias
        for e in range(m.n_experts):
            y = y + (ALPHA / RANK) * gates[b, e] * (x[b] @ m.lora_A[e].T @ m.lora_B[e].T)
        rows.append(y)
    return torch.stack(rows)


def test_mixture_equals_per_sample_sum_of_lora_deltas(mixture):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 7, IN, generator=gen)
    gates = torch.rand(6, N_EXPERTS, generator=gen) * (torch.rand(6, N_EXPERTS, generator=gen) > 0.4)
    got = mixture(x, gates)
    torch.testing.assert_close(got, _explicit(mixture, x, gates), atol=1e-5, rtol=1e-5)


def test_mixture_accepts_token_free_inputs(mixture):
    x, gates = torch.randn(4, IN), torch.rand(4, N_EXPERTS)
    got = mixture(x, gates)
    torch.testing.assert_close(got, _explicit(mixture, x[:, None], gates)[:, 0], atol=1e-5, rtol=1e-5)


def test_one_hot_gate_reproduces_peft_lora(mixture):
    from peft import LoraConfig, inject_adapter_in_model

    x = torch.randn(3, 5, IN, generator=torch.Generator().manual_seed(2))
    for expert in range(N_EXPERTS):
        wrapper = nn.Sequential()
        wrapper.add_module("lin", nn.Linear(IN, OUT))
        wrapper.lin.load_state_dict(mixture.base.state_dict())
        inject_adapter_in_model(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["lin"]), wrapper)
        with torch.no_grad():
            wrapper.lin.lora_A["default"].weight.copy_(mixture.lora_A[expert])
            wrapper.lin.lora_B["default"].weight.copy_(mixture.lora_B[expert])
        gates = torch.zeros(3, N_EXPERTS)
        gates[:, expert] = 1.0
        ours = mixture(x, gates)
        theirs = wrapper(x)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
        assert not torch.allclose(theirs, mixture.base(x))  # the adapter really contributed


def test_gradients_reach_exactly_the_routed_experts(mixture):
    x = torch.randn(4, 6, IN, generator=torch.Generator().manual_seed(3))
    gates = torch.zeros(4, N_EXPERTS)
    gates[0, 1] = 1.0
    gates[1, 3] = 1.0
    gates[2, 1] = 0.5  # sample 3 is routed nowhere
    mixture(x, gates).square().sum().backward()
    for e in range(N_EXPERTS):
        a_norm, b_norm = mixture.lora_A.grad[e].abs().sum(), mixture.lora_B.grad[e].abs().sum()
        if e in (1, 3):
            assert a_norm > 0 and b_norm > 0, e
        else:
            assert a_norm == 0 and b_norm == 0, e


def test_fresh_experts_change_nothing_and_start_like_peft():
    torch.manual_seed(0)
    m = LoRAExpertMixture(nn.Linear(IN, OUT), N_EXPERTS, RANK, ALPHA)
    assert torch.count_nonzero(m.lora_B) == 0
    bound = 1 / IN**0.5  # Kaiming-uniform(a=sqrt(5)) on fan-in IN, as peft's lora_A
    assert m.lora_A.abs().max() <= bound and m.lora_A.abs().max() > 0.5 * bound
    x = torch.randn(2, 3, IN)
    torch.testing.assert_close(m(x, torch.ones(2, N_EXPERTS)), m.base(x))


def test_gates_are_an_argument_and_checked(mixture):
    x = torch.randn(2, IN)
    with pytest.raises(TypeError):
        mixture(x)
    with pytest.raises(ValueError, match="gates must have shape"):
        mixture(x, torch.zeros(3, N_EXPERTS))
    assert not hasattr(mixture, "gates")  # nothing on the module carries a batch's routing


def test_lora_dropout_acts_only_in_training(mixture):
    m = LoRAExpertMixture(mixture.base, N_EXPERTS, RANK, ALPHA, dropout=0.5)
    with torch.no_grad():
        m.lora_A.copy_(mixture.lora_A)
        m.lora_B.copy_(mixture.lora_B)
    x, gates = torch.randn(3, 4, IN), torch.ones(3, N_EXPERTS)
    m.eval()
    torch.testing.assert_close(m(x, gates), mixture(x, gates))
    m.train()
    torch.manual_seed(0)
    assert not torch.allclose(m(x, gates), mixture(x, gates))


def test_attach_experts_replaces_the_targets_of_a_timm_block():
    from timm.models.vision_transformer import Block

    torch.manual_seed(0)
    block = Block(dim=16, num_heads=2, mlp_ratio=2.0).eval()
    x = torch.randn(2, 5, 16)
    before = block(x)
    mixtures = attach_experts(block, ("qkv", "fc2"), n_experts=4, rank=2, alpha=4.0)
    assert block.attn.qkv is mixtures[0] and block.mlp.fc2 is mixtures[1]
    assert isinstance(block.attn.proj, nn.Linear) and not isinstance(block.attn.proj, LoRAExpertMixture)
    torch.testing.assert_close(expert_block_forward(block, x, torch.ones(2, 4)), before)  # B = 0 at init
    with pytest.raises(Exception, match="unknown or empty LoRA targets"):
        attach_experts(block, ("ffn",), 4, 2, 4.0)


def test_lora_config_round_trips_through_peft():
    from peft import PeftConfig

    cfg = lora_config(blocks=(2, 3), targets=("qkv", "fc1"), rank=4, alpha=8.0, dropout=0.1)
    assert set(cfg.target_modules) == {"blocks.2.attn.qkv", "blocks.2.mlp.fc1", "blocks.3.attn.qkv", "blocks.3.mlp.fc1"}
    data = cfg.to_dict()
    data["target_modules"] = sorted(data["target_modules"])
    back = PeftConfig.from_peft_type(**data)
    assert type(back) is type(cfg)
    assert (back.r, back.lora_alpha, back.lora_dropout) == (4, 8.0, 0.1)
    assert set(back.target_modules) == set(cfg.target_modules)


def test_expert_subset_equals_the_full_mixture_and_none_is_the_base(mixture):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(5, 6, IN, generator=gen)
    gates = torch.rand(5, N_EXPERTS, generator=gen)
    gates[:, [0, 2, 3]] = 0.0  # only experts 1 and 4 may act
    with torch.no_grad():
        full = mixture(x, gates)
        torch.testing.assert_close(mixture(x, gates, (1, 4)), full, atol=1e-6, rtol=1e-6)  # gathered columns
        gates[:, 4] = 0.0
        torch.testing.assert_close(mixture(x, gates, (1,)), mixture(x, gates), atol=1e-6, rtol=1e-6)  # one run: a view
        torch.testing.assert_close(mixture(x, gates, (1, 2)), mixture(x, gates), atol=1e-6, rtol=1e-6)
        assert torch.equal(mixture(x, torch.zeros_like(gates), ()), mixture.base(x))
        assert torch.equal(mixture(x, torch.zeros_like(gates)), mixture.base(x))  # zero gates add exact zeros


def test_flattened_factors_are_reused_only_while_the_weights_are_unchanged(mixture):
    x, gates = torch.randn(3, 4, IN), torch.rand(3, N_EXPERTS)
    with torch.inference_mode():
        before = mixture(x, gates)
        assert torch.equal(mixture(x, gates), before) and len(mixture._factor_cache) == 1
    with torch.no_grad():
        mixture.lora_B.mul_(2.0)  # an optimiser step or load_state_dict updates in place
        after = mixture(x, gates)
    torch.testing.assert_close(after - mixture.base(x), 2 * (before - mixture.base(x)), atol=1e-5, rtol=1e-5)
    mixture.double()  # a dtype or device change replaces the factors
    assert mixture._factor_cache == {}
    with torch.no_grad():
        torch.testing.assert_close(mixture(x.double(), gates.double()).float(), after, atol=1e-5, rtol=1e-5)
    # with autograd nothing is cached: the gradient must reach lora_B
    mixture.float()
    mixture(x, gates).sum().backward()
    assert mixture.lora_B.grad is not None and mixture.lora_B.grad.abs().sum() > 0


def test_mixture_runs_under_cpu_bf16_autocast(mixture):
    x, gates = torch.randn(3, 4, IN), torch.rand(3, N_EXPERTS)
    with torch.no_grad():
        reference = mixture(x, gates)
        with torch.autocast("cpu", torch.bfloat16):
            low = mixture(x, gates)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("fused", [True, False])
def test_expert_block_forward_is_timms_forward(fused):
    from timm.models.vision_transformer import Block

    torch.manual_seed(0)
    block = Block(dim=16, num_heads=2, mlp_ratio=2.0, qkv_bias=True, init_values=0.5).eval()
    block.attn.fused_attn = fused
    x = torch.randn(3, 5, 16)
    mixtures = attach_experts(block, ("qkv", "proj", "fc1", "fc2"), n_experts=4, rank=2, alpha=4.0)
    plain = {m: m.base for m in mixtures}
    gates = torch.rand(3, 4)
    with torch.no_grad():
        for m in mixtures:
            m.lora_B.normal_()
        ours = expert_block_forward(block, x, gates)
        for m in mixtures:  # the same block with plain projections through timm's own forward
            m.lora_B.zero_()
        untouched = expert_block_forward(block, x, gates)
        block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2 = plain.values()
        assert torch.equal(untouched, block(x))  # op for op timm's arithmetic (B = 0 adds exact zeros)
        assert torch.equal(expert_block_forward(block, x, gates), block(x))
    assert not torch.equal(ours, untouched)


def test_experts_refuse_blocks_whose_forward_is_not_reproduced():
    from timm.models.vision_transformer import ResPostBlock

    with pytest.raises(Exception, match="plain ViT Block"):
        attach_experts(ResPostBlock(dim=16, num_heads=2), ("qkv",), 4, 2, 4.0)

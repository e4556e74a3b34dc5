"""The training step: no host sync on the device's side, one graph for routing + forward + loss,
fused Adam on CUDA, inputs checked once before the loop. A micro ViT and batches of 4 x 2."""

from __future__ import annotations

import pytest
import torch

from mosaic.core.errors import MosaicError
from syncs import count_syncs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make_step(device: str = "cpu", fused: bool | None = None, adapter: str = "experts", **step_options):
    from benchmarks.gpu_check_train import SIZES, market_schema, recipe, train_step
    from mosaic.model import build_model

    torch.manual_seed(0)
    size = dict(SIZES["smoke"], n_images=32, n_ids=8)
    cfg = recipe(size, adapter)
    model = build_model(cfg.model, market_schema(), num_classes=size["n_ids"]).to(device).train()
    step, sampler = train_step(cfg, model, torch.device(device), size, 4, 2, fused=fused, **step_options)
    return step, sampler.epoch_batches(0)


@pytest.fixture(scope="module")
def fused_step():
    """The step with fused Adam, the kernel a CUDA run uses (on the CPU it exists too)."""
    step, batches = make_step(fused=True)
    step(batches[0])  # lazy state: optimiser slots, the device generator
    return step, batches


def test_the_device_part_of_a_training_step_makes_no_host_sync(fused_step):
    step, batches = fused_step
    host = step.draw(batches[1])  # indices and every random draw: CPU tensors, read freely
    assert host.index.device.type == "cpu" and host.augment.flip.device.type == "cpu"
    with count_syncs() as syncs:
        parts = step.run(host)
    assert syncs.events == []
    assert parts.shape == (4,) and torch.isfinite(parts).all()


def test_the_sync_count_sees_a_scalar_read_in_the_step(fused_step, monkeypatch):
    step, batches = fused_step
    real = step.loss_fn

    def reads_a_value(output, labels, states):
        terms = real(output, labels, states)
        if bool(terms.total > 1e9):  # the kind of check that makes a GPU wait every step
            raise AssertionError("unreachable")
        return terms

    monkeypatch.setattr(step, "loss_fn", reads_a_value)
    host = step.draw(batches[2])
    with count_syncs() as syncs:
        step.run(host)
    assert len(syncs.events) == 1 and "_local_scalar_dense" in syncs.events[0][0]


def test_routing_forward_and_loss_trace_as_one_graph(fused_step):
    step, batches = fused_step
    host = step.draw(batches[3])
    index = host.index
    x = step.augment.apply(step.images.index_select(0, index), host.augment)
    explained = torch._dynamo.explain(step._forward_loss)(
        x, step.states.index_select(0, index), step.labels.index_select(0, index), host.routing.groups, host.routing.all_off
    )
    assert explained.graph_break_count == 0, [r.reason.splitlines()[0] for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_adam_is_fused_only_when_every_parameter_is_on_cuda():
    from mosaic.train.optim import fused_by_default

    step, _ = make_step()
    assert not step.optimizer.defaults.get("fused")  # the CPU keeps PyTorch's default
    groups = step.optimizer.param_groups
    assert fused_by_default(groups) is False and fused_by_default([]) is False


def test_cuda_graphs_need_the_compiled_step():
    from mosaic.train.config import load_config

    with pytest.raises(MosaicError, match="run.cuda_graphs captures the compiled step: set run.compile=true"):
        load_config("synthetic_micro", ["run.cuda_graphs=true"])
    assert load_config("synthetic_micro", ["run.cuda_graphs=true", "run.compile=true"]).run.cuda_graphs


def test_training_states_are_checked_once_before_the_loop():
    from mosaic.train.config import RoutingConfig
    from mosaic.train.step import check_training_states

    step, _ = make_step()
    states = step.states.numpy().copy()
    check_training_states(step.model, states, RoutingConfig(fixed_prob=0.1))
    states[5, 2] = 99
    with pytest.raises(MosaicError, match="state codes out of range for schema 'market1501'"):
        check_training_states(step.model, states, RoutingConfig())
    step.model.routers["oracle"].fixed_gates.fill_(float("nan"))  # a model without state shares
    with pytest.raises(MosaicError, match="routing.fixed_prob routes by fixed gates but the model has none"):
        check_training_states(step.model, step.states.numpy(), RoutingConfig(fixed_prob=0.1))


# ----------------------------------------------------------------------------- on a GPU


@cuda
def test_a_cuda_step_makes_no_sync_by_the_gpus_own_check():
    step, batches = make_step("cuda")
    assert step.optimizer.defaults["fused"]
    step(batches[0])
    torch.cuda.synchronize()
    host = step.draw(batches[1])
    torch.cuda.set_sync_debug_mode("error")
    try:
        step.run(host)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@cuda
def test_fused_adam_takes_the_foreach_step():
    from mosaic.train.config import OptimConfig
    from mosaic.train.optim import build_optimizer

    torch.manual_seed(0)
    weights = [torch.nn.Linear(64, 32).cuda() for _ in range(2)]
    twins = [torch.nn.Linear(64, 32).cuda() for _ in range(2)]
    for w, t in zip(weights, twins):
        t.load_state_dict(w.state_dict())
    config = OptimConfig(name="adam", lr=1e-3, weight_decay=1e-4)
    fused = build_optimizer(torch.nn.ModuleList(weights), config)
    foreach = build_optimizer(torch.nn.ModuleList(twins), config, fused=False)
    assert fused.defaults["fused"] and not foreach.defaults.get("fused")
    x = torch.randn(16, 64, device="cuda")
    for _ in range(3):
        for opt, net in ((fused, weights), (foreach, twins)):
            opt.zero_grad()
            sum(m(x).square().mean() for m in net).backward()
            opt.step()
    for w, t in zip(weights, twins):
        torch.testing.assert_close(w.weight, t.weight, rtol=1e-6, atol=1e-6)


@cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_the_compiled_step_trains_like_the_eager_one(cuda_graphs):
    eager, batches = make_step("cuda")
    compiled, _ = make_step("cuda", compile=True, cuda_graphs=cuda_graphs)
    for i in range(3):
        torch.testing.assert_close(compiled(batches[i]), eager(batches[i]), rtol=5e-2, atol=5e-2)  # bf16 autocast

"""One validation engine (mosaic.core.settings) behind every settings object: each bad value is one line
naming the key, the constraint and the value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from mosaic.core.errors import MosaicError
from mosaic.core.settings import build, check_fields


@dataclass
class Toy:
    n: int = 3
    rate: float = 0.5
    names: tuple[str, ...] = ("a",)
    mode: str = "x"
    limit: float | None = None

    bounds: ClassVar[dict[str, tuple]] = {"n": (1, None), "rate": (0, 1, "[)"), "limit": (0, None, "(]")}
    choices: ClassVar[dict[str, Any]] = {"mode": lambda: REGISTRY, "names": ("a", "b")}

    def __post_init__(self) -> None:
        check_fields(self, "toy.")


REGISTRY = {"x": 1, "y": 2}


@pytest.mark.parametrize("kwargs, message", [
    (dict(n="3"), "toy.n must be an integer, got '3'"),
    (dict(n=2.5), "toy.n must be an integer, got 2.5"),
    (dict(n=True), "toy.n must be an integer, got True"),
    (dict(n=0), "toy.n must be at least 1, got 0"),
    (dict(rate=1.0), "toy.rate must be in [0, 1), got 1.0"),
    (dict(limit=0), "toy.limit must be greater than 0, got 0.0"),
    (dict(names=["a", 2]), "toy.names must be a list of a string, got ['a', 2]"),
    (dict(names=["c"]), "toy.names must be one of ['a', 'b'], got 'c'"),
    (dict(mode="z"), "toy.mode must be one of ['x', 'y'], got 'z'"),
])
def test_types_ranges_and_choices_name_key_constraint_and_value(kwargs, message):
    with pytest.raises(MosaicError, match=re.escape(message)):
        Toy(**kwargs)


def test_values_are_normalised_and_registries_read_when_checked():
    toy = Toy(n=4.0, names=["a", "b"], limit=2)
    assert toy.n == 4 and isinstance(toy.n, int) and toy.names == ("a", "b") and toy.limit == 2.0
    assert Toy(names="b").names == ("b",)  # a lone name is a one-item list
    REGISTRY["w"] = 3  # registered after the class was defined
    try:
        assert Toy(mode="w").mode == "w"
    finally:
        REGISTRY.pop("w")


def test_build_refuses_unknown_keys_with_the_closest_one():
    with pytest.raises(MosaicError, match=re.escape("unknown key 'rat' in toy: did you mean 'rate'?")):
        build(Toy, {"rat": 0.1}, "toy.")
    assert build(Toy, {"rate": "3e-1"}, "toy.").rate == pytest.approx(0.3)


@pytest.mark.parametrize("make, message", [
    (lambda: __import__("mosaic.model", fromlist=["ModelConfig"]).ModelConfig(lora_rank=0), "lora_rank must be at least 1, got 0"),
    (lambda: __import__("mosaic.model", fromlist=["ModelConfig"]).ModelConfig(adapter="lora2"), "adapter must be one of"),
    (lambda: __import__("mosaic.model", fromlist=["ModelConfig"]).ModelConfig(expert_blocks="2"), "expert_blocks must be an integer, got '2'"),
    (lambda: __import__("mosaic.synth", fromlist=["WorldConfig"]).WorldConfig(occlusion=1.5), "occlusion must be in [0.0, 1.0], got 1.5"),
    (lambda: __import__("mosaic.synth", fromlist=["WorldConfig"]).WorldConfig(seed="0"), "seed must be an integer, got '0'"),
    (lambda: __import__("mosaic.synth", fromlist=["WorldConfig"]).WorldConfig.from_dict({"n_idz": 3}), "unknown key 'n_idz' in the world settings: did you mean 'n_ids'?"),
    (lambda: __import__("mosaic.tracing.engine", fromlist=["TraceSettings"]).TraceSettings(top_k=-1), "top_k must be at least 0, got -1"),
    (lambda: __import__("mosaic.tracing.engine", fromlist=["TraceSettings"]).TraceSettings(distance="cosin"), "distance must be one of ['cosine', 'euclidean'], got 'cosin' (did you mean 'cosine'?)"),
    (lambda: __import__("analysis").analyze(None, alpha=2), "alpha must lie strictly between 0 and 1, got 2.0"),
    (lambda: __import__("analysis.settings", fromlist=["AnalysisSettings"]).AnalysisSettings(n_bootstrap="many"), "n_bootstrap must be an integer, got 'many'"),
    (lambda: __import__("analysis.settings", fromlist=["AnalysisSettings"]).AnalysisSettings(comparisons=("drop", "dorp")), "comparisons must be one of ['drop', 'counterfactual'], got 'dorp'"),
])
def test_every_settings_object_uses_the_engine(make, message):
    with pytest.raises(MosaicError, match=re.escape(message)):
        make()

"""Shared fixtures: the real annotation files beside the checkout, and small synthetic worlds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    override = os.environ.get("MOSAIC_SHARED_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder holding ``market_attribute/market_attribute.mat`` and ``duke_attribute/duke_attribute.mat``."""
    path = _shared_data_dir()
    if not (path / "market_attribute" / "market_attribute.mat").is_file():
        pytest.fail(f"real attribute files not found under {path}; set MOSAIC_SHARED_DATA to the folder")
    return path


@pytest.fixture(scope="session")
def market_attribute_file(shared_data: Path) -> Path:
    return shared_data / "market_attribute" / "market_attribute.mat"


@pytest.fixture(scope="session")
def duke_attribute_file(shared_data: Path) -> Path:
    return shared_data / "duke_attribute" / "duke_attribute.mat"


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A few-identity synthetic world in the Market-1501 layout, built once per test session."""
    from mosaic.synth import WorldConfig, synthesize

    out = tmp_path_factory.mktemp("tiny_world")
    return synthesize(out / "world", WorldConfig(n_ids=12, images_per_id=8, seed=7))


def pytest_collection_modifyitems(config, items):
    """GPU-marked tests skip cleanly on machines without CUDA."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: nothing GPU-only can run
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

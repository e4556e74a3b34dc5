"""Shared fixtures: the real annotation files (when found), synthetic files in their structure,
and small synthetic worlds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_ENV = "MOSAIC_SHARED_DATA"
REAL_FILES_MISSING = (
    "real Lin et al. attribute files not found: run `mosaic data get-attributes` "
    f"or set {SHARED_DATA_ENV} to a folder holding market_attribute/ and duke_attribute/"
)


def clone_checkout(dest: Path) -> Path:
    """A clone of this checkout's committed state at ``dest`` (what a fresh clone or a build sees)."""
    import subprocess

    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(dest)], check=True, timeout=300)
    return dest


def real_attribute_dirs() -> list[Path]:
    """Where the real files may be, in order: the variable, the user cache, a sibling shared/data."""
    from mosaic.data.download import attribute_cache_dir

    dirs = [attribute_cache_dir(), REPO_ROOT.parent / "shared" / "data"]
    override = os.environ.get(SHARED_DATA_ENV)
    return [Path(override), *dirs] if override else dirs


# Taken once, before any test points the cache elsewhere (see isolated_download_cache).
REAL_ATTRIBUTE_DIRS = real_attribute_dirs()


def find_real_file(name: str) -> Path | None:
    """``<dir>/<name>/<name>.mat`` in the first of :data:`REAL_ATTRIBUTE_DIRS` that holds it."""
    for folder in REAL_ATTRIBUTE_DIRS:
        path = folder / name / f"{name}.mat"
        if path.is_file():
            return path
    return None


def _real_file(name: str) -> Path:
    path = find_real_file(name)
    if path is None:  # normally skipped at collection already (see pytest_collection_modifyitems)
        pytest.skip(REAL_FILES_MISSING)
    return path


@pytest.fixture(autouse=True)
def isolated_download_cache(tmp_path_factory, monkeypatch):
    """Every test sees an empty download cache of its own, whatever the user's cache holds."""
    from mosaic.data.download import DATA_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path_factory.mktemp("mosaic_data")))


@pytest.fixture(scope="session")
def market_attribute_file() -> Path:
    """The real ``market_attribute.mat``; tests needing it skip when it is not found."""
    return _real_file("market_attribute")


@pytest.fixture(scope="session")
def duke_attribute_file() -> Path:
    """The real ``duke_attribute.mat``; tests needing it skip when it is not found."""
    return _real_file("duke_attribute")


# Identities of the small Market-1501 trees the loader tests build (tests/test_data_folders.py):
# train ids in the train struct, test ids in the test struct, as in the real file.
SYNTHETIC_TRAIN_IDS = (2, 4, 7, 10)
SYNTHETIC_TEST_IDS = (1, 3, 5, 8)


@pytest.fixture(scope="session")
def synthetic_market_attribute_file(tmp_path_factory) -> Path:
    """A ``market_attribute.mat`` in the real file's structure (the world generator's writer),
    every label annotated, for tests that need the structure but not the real counts."""
    from mosaic.synth import WorldConfig
    from mosaic.synth.people import sample_people
    from mosaic.synth.world import write_attribute_file

    config = WorldConfig(n_ids=12, images_per_id=4, seed=11)
    people = sample_people(config.n_ids, config, np.random.default_rng(config.seed))
    path = tmp_path_factory.mktemp("synthetic_attributes") / "market_attribute.mat"
    write_attribute_file(path, people, np.array(SYNTHETIC_TRAIN_IDS), np.array(SYNTHETIC_TEST_IDS), config)
    return path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A few-identity synthetic world in the Market-1501 layout, built once per test session."""
    from mosaic.synth import WorldConfig, synthesize

    out = tmp_path_factory.mktemp("tiny_world")
    return synthesize(out / "world", WorldConfig(n_ids=12, images_per_id=8, seed=7))


REAL_FILE_FIXTURES = {"market_attribute_file": "market_attribute", "duke_attribute_file": "duke_attribute"}


def _skip_without_real_files(items) -> None:
    """Tests of the real files (by fixture or ``real_attributes`` mark) skip when the files are not
    found. Marked at collection, pytest's summary shows one line per test file with one reason."""
    found = {name: find_real_file(name) is not None for name in REAL_FILE_FIXTURES.values()}
    skip = pytest.mark.skip(reason=REAL_FILES_MISSING)
    for item in items:
        needed = {REAL_FILE_FIXTURES[f] for f in REAL_FILE_FIXTURES if f in getattr(item, "fixturenames", ())}
        if item.get_closest_marker("real_attributes"):
            needed |= set(found)
        if needed and not all(found[name] for name in needed):
            item.add_marker(skip)


def pytest_collection_modifyitems(config, items):
    """Tests of the real attribute files skip without them; GPU-marked tests skip without CUDA."""
    _skip_without_real_files(items)
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

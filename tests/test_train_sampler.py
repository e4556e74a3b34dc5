"""P x K sampler: shape of the batches, epochs, determinism and the distributed split."""

from __future__ import annotations

import numpy as np
import pytest

from mosaic.core.errors import MosaicError
from mosaic.train.sampler import PKSampler


def pids_with_counts(counts):
    return np.repeat(np.arange(100, 100 + len(counts)), counts)


def test_each_batch_has_p_identities_times_k_images():
    rng = np.random.default_rng(0)
    pids = pids_with_counts(rng.integers(1, 12, size=40))  # some identities have fewer than K images
    sampler = PKSampler(pids, p=6, k=4, seed=3)
    batches = sampler.epoch_batches(0)
    assert len(batches) == sampler.steps_per_epoch > 1
    for batch in batches:
        assert batch.shape == (24,)
        ids, counts = np.unique(pids[batch], return_counts=True)
        assert len(ids) == 6 and np.all(counts == 4)


def test_epoch_covers_the_images_and_changes_between_epochs():
    pids = pids_with_counts([8] * 20)
    sampler = PKSampler(pids, p=4, k=4, seed=0)
    assert sampler.steps_per_epoch == 10  # 40 chunks of K over P per step
    first = np.concatenate(sampler.epoch_batches(0))
    assert len(np.unique(first)) == len(pids)  # every image exactly once when counts divide by K
    assert not np.array_equal(first, np.concatenate(sampler.epoch_batches(1)))


def test_same_seed_same_batches_and_resume_offsets():
    pids = pids_with_counts([5, 9, 3, 7, 6, 8, 4, 10])
    a = PKSampler(pids, p=3, k=2, seed=11).epoch_batches(2)
    b = PKSampler(pids, p=3, k=2, seed=11).epoch_batches(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    tail = PKSampler(pids, p=3, k=2, seed=11).epoch_batches(2, start=3)
    assert all(np.array_equal(x, y) for x, y in zip(a[3:], tail))
    other = PKSampler(pids, p=3, k=2, seed=12).epoch_batches(2)
    assert not all(np.array_equal(x, y) for x, y in zip(a, other))


def test_distributed_ranks_get_disjoint_identities_and_equal_steps():
    rng = np.random.default_rng(1)
    pids = pids_with_counts(rng.integers(2, 9, size=30))
    world = 3
    samplers = [PKSampler(pids, p=4, k=2, seed=5, rank=r, world_size=world) for r in range(world)]
    per_rank = [s.epoch_batches(1) for s in samplers]
    assert len({len(b) for b in per_rank}) == 1
    for step in range(len(per_rank[0])):
        id_sets = [set(pids[per_rank[r][step]].tolist()) for r in range(world)]
        assert all(len(s) == 4 for s in id_sets)
        assert len(set().union(*id_sets)) == 4 * world  # disjoint across ranks


def test_too_few_identities_is_a_user_error():
    with pytest.raises(MosaicError, match="lower sampler.p"):
        PKSampler(pids_with_counts([4] * 5), p=4, k=2, world_size=2)


def test_state_dict_refuses_a_different_recipe():
    pids = pids_with_counts([4] * 8)
    state = PKSampler(pids, p=4, k=2, seed=1).state_dict()
    with pytest.raises(MosaicError, match="sampler.k"):
        PKSampler(pids, p=4, k=4, seed=1).load_state_dict(state)

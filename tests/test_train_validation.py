"""The validation split: held-out training identities, one query per camera, by a seeded rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mosaic.core.errors import MosaicError
from mosaic.train.config import load_config
from mosaic.train.validation import held_out_count, split_validation


def frame(n_ids: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(1, n_ids + 1):
        cams = [1] if pid % 10 == 0 else rng.choice(np.arange(1, 7), size=rng.integers(2, 5), replace=False)
        for cam in cams:
            for i in range(rng.integers(1, 4)):
                rows.append({"path": f"{pid:04d}_c{cam}_{i}.jpg", "pid": pid, "camid": int(cam), "split": "train"})
    return pd.DataFrame(rows)


def test_held_out_identities_leave_training_and_give_one_query_per_camera():
    train = frame()
    split = split_validation(train, 0.25, seed=3)
    held = set(split.held_out_pids.tolist())
    assert len(held) == 10
    assert not held & set(split.train["pid"]) and len(split.train) + len(split.query) + len(split.gallery) == len(train)
    for pid in held:
        mine = train[train["pid"] == pid]
        queries = split.query[split.query["pid"] == pid]
        if mine["camid"].nunique() >= 2:
            assert sorted(queries["camid"]) == sorted(mine["camid"].unique())  # one per camera
        else:
            assert queries.empty  # no cross-camera match: gallery only
    assert set(split.query["split"]) == {"query"} and set(split.gallery["split"]) == {"gallery"}
    again = split_validation(train, 0.25, seed=3)
    pd.testing.assert_frame_equal(split.query, again.query)
    assert set(split_validation(train, 0.25, seed=4).held_out_pids) != held  # the seed decides


def test_counts_fractions_and_mistakes():
    assert held_out_count(0, 751) == 0
    assert held_out_count(0.1, 751) == 75 and held_out_count(50, 751) == 50 and held_out_count(0.001, 751) == 2
    with pytest.raises(MosaicError, match="fewer than 2 to train on"):
        held_out_count(750, 751)
    with pytest.raises(MosaicError, match="whole count"):
        held_out_count(2.5, 751)
    assert split_validation(frame(), 0, seed=0).query.empty
    with pytest.raises(MosaicError, match="eval.every evaluates during training"):
        load_config(None, ["eval.every=5"])
    assert load_config(None, ["eval.every=5", "eval.val_ids=0.1"]).eval.val_ids == 0.1

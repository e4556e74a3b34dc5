"""The embedding audit end to end on a real trained network: the demo's model, exported with every
expert off and audited as an external model's features (docs/audit.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import analysis
from mosaic.app.cli import main
from mosaic.configs import shipped_config


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit_demo")
    config = yaml.safe_load(shipped_config("synthetic_micro").path.read_text())
    config["optim"]["epochs"] = 1
    config["optim"]["warmup_epochs"] = 0
    config["eval"]["every"] = 1
    config["sampler"]["p"] = 4
    config["run"]["checkpoint_every"] = 1
    config_path = folder / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    out = folder / "out"
    assert main(["demo", "--out", str(out), "--config", str(config_path), "--ids", "16", "--images-per-id", "8",
                 "--no-progress"]) == 0
    return out


def test_the_demo_audits_its_network_exported_with_every_expert_off(demo_out):
    audit = demo_out / "audit"
    features = np.load(audit / "features_none.npz")
    assert str(features["model"]) == "demo_none"
    traced = analysis.read_trace(audit / "trace.h5")
    assert traced.data.condition_name.tolist() == ["embedding:demo_none"]
    # the exported network is the checkpoint's `none` condition: the same retrieval as in the demo's trace
    full = analysis.read_trace(demo_out / "trace.h5")
    none = full.condition_index("none")
    assert traced.data.mAP[0] == pytest.approx(full.data.mAP[none], abs=1e-5)
    np.testing.assert_array_equal(traced.data.first_match_rank[0], full.data.first_match_rank[none])
    document = json.loads((audit / "report.json").read_text(encoding="utf-8"))
    tables = document["analysis"]["tables"]
    assert {"attribute_confusion", "distance_sharing", "query_glm"} <= set(tables)
    html = (audit / "report.html").read_text(encoding="utf-8")
    assert "embedding:demo_none" in html and "than chance" in html

"""add_corrections: one way to add p_* and reject_* columns, NaN-safe, within each family."""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from analysis.stats.corrections import add_corrections


def test_nan_and_untested_rows_never_poison_a_family():
    frame = pd.DataFrame({
        "comparison": ["drop"] * 5 + ["counterfactual"] * 3,
        "p": [0.01, np.nan, 0.04, 0.03, 0.002, 0.2, 0.01, 0.5],
        "status": ["ok", "not tested", "ok", "ok", "not estimable", "ok", "ok", "ok"],
    })
    out = add_corrections(frame, 0.05)
    drop = out["comparison"] == "drop"
    kept = drop & (out["status"] == "ok")
    for method, name in (("holm", "holm"), ("fdr_bh", "bh")):
        np.testing.assert_allclose(out.loc[kept, f"p_{name}"], multipletests(frame.loc[kept, "p"], method=method)[1])
        cf = ~drop
        np.testing.assert_allclose(out.loc[cf, f"p_{name}"], multipletests(frame.loc[cf, "p"], method=method)[1])
        assert out.loc[drop & ~kept, f"p_{name}"].isna().all()
        assert not out.loc[drop & ~kept, f"reject_{name}"].any()
    # the untested row with p = 0.002 did not join the family: Holm's m is 3, not 4
    assert out.loc[0, "p_holm"] == 0.03


def test_whole_table_family_and_other_p_column():
    frame = pd.DataFrame({"p_boot": [0.01, 0.02, np.nan]})
    out = add_corrections(frame, 0.05, by=None, p_column="p_boot")
    np.testing.assert_allclose(out["p_bh"][:2], [0.02, 0.02])
    assert out["reject_bh"].tolist() == [True, True, False]

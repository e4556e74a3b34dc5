"""What ``mosaic demo --seeds N`` prints at the end: the study's headline (the work is :mod:`mosaic.app.demo_study`)."""

from __future__ import annotations

from pathlib import Path


def print_study_headline(study_json: Path, echo) -> None:
    """Per label the three most relied-on groups, and every Holm-significant label contrast."""
    import json

    tables = json.loads(study_json.read_text(encoding="utf-8"))["analysis"]["tables"]
    for row in tables["concordance"]:
        top = [r["group"] for r in tables["rank_stability"] if r["label"] == row["label"]][:3]
        w = row.get("kendall_w")
        echo(f"  {row['label']}: top groups {', '.join(top)}; Kendall's W across seeds "
             + ("n/a (one seed)" if w is None else f"{w:.2f}"))
    for r in tables["contrasts"]:
        if r.get("reject_holm") and r["level"] == "group":
            echo(f"  {r['item']} ({r['quantity']}): {r['label_a']} − {r['label_b']} = {r['estimate']:+.2f} mAP points "
                 f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], Holm p {r['p_holm']:.3g}")

"""`mosaic data check`: tables, findings, exit codes (0 usable, 1 errors found, 2 unreadable)."""

from __future__ import annotations

import json

import pytest

from mosaic.app.cli import main
from test_data_folders import DUKE_FILES, MARKET_FILES, make_tree


def run(capsys, *args):
    code = main(["data", "check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_usable_market_tree(tmp_path, capsys, synthetic_market_attribute_file):
    root = make_tree(tmp_path / "market", MARKET_FILES)
    code, out, err = run(capsys, root, "--attributes", synthetic_market_attribute_file)
    assert code == 0, err
    for text in ("Splits", "Attribute coverage", "Findings", "junk-dropped", "distractors", "state-pooled"):
        assert text in out
    assert "0 errors" in out and "usable" in out


def test_real_market_file_traps_are_reported(tmp_path, capsys, market_attribute_file):
    root = make_tree(tmp_path / "market", MARKET_FILES)
    code, out, err = run(capsys, root, "--attributes", market_attribute_file)
    assert code == 0, err
    assert "colour-none-marked" in out and "state-pooled" in out


def test_json_report(tmp_path, capsys, synthetic_market_attribute_file):
    root = make_tree(tmp_path / "market", MARKET_FILES)
    code, out, _ = run(capsys, root, "--attributes", synthetic_market_attribute_file, "--format", "market1501", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["format"] == "market1501" and report["schema"]["groups"] == 12
    assert report["splits"] == {
        "train": {"images": 5, "identities": 3, "cameras": 4, "distractor_images": 0},
        "query": {"images": 2, "identities": 2, "cameras": 2, "distractor_images": 0},
        "gallery": {"images": 6, "identities": 2, "cameras": 4, "distractor_images": 2},
    }
    assert report["coverage"]["upcolour"]["gallery_images"] == 1.0  # distractors not counted against coverage
    codes = {f["code"]: f for f in report["findings"]}
    assert codes["junk-dropped"]["count"] == 2


def test_duke_traps_are_reported(tmp_path, capsys, duke_attribute_file):
    root = make_tree(tmp_path / "duke", DUKE_FILES)
    code, out, _ = run(capsys, root, "-a", duke_attribute_file, "--json")
    assert code == 0
    codes = {f["code"]: f for f in json.loads(out)["findings"]}
    assert codes["colour-multi-marked"]["count"] == 23
    assert "0370, 0679" in codes["attribute-missing"]["message"]
    assert codes["state-pooled"]["message"].startswith("downcolour: field downgreen")
    # the query of 0002 in camera 1 still has a camera-2 match; no query is lost
    assert "query-without-match" not in codes


def test_identities_without_attributes_exit_1(tmp_path, capsys, synthetic_market_attribute_file):
    files = {k: list(v) for k, v in MARKET_FILES.items()}
    files["query"].append("1700_c1s1_000001_00.jpg")
    root = make_tree(tmp_path / "market", files)
    code, out, err = run(capsys, root, "--attributes", synthetic_market_attribute_file)
    assert code == 1
    assert err.startswith("error: market: 1 error finding (ids-without-attributes)")
    assert "ids-without-attributes" in out and "1700 (query)" in out
    # the query of 1700 has no gallery match either
    assert "query-without-match" in out


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing-folder", "no query/ in"),
        ("foreign-names", "DSC0001.jpg is not a Market-1501 file name"),
        pytest.param("other-dataset", "holds dukemtmc annotations", marks=pytest.mark.real_attributes),
        ("not-matlab", "not a readable MATLAB .mat file"),
        ("no-attributes", "pass --attributes"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, request, synthetic_market_attribute_file, setup, message):
    files = {k: list(v) for k, v in MARKET_FILES.items()}
    args = ["--attributes", synthetic_market_attribute_file, "--format", "market1501"]
    if setup == "missing-folder":
        del files["query"]
    elif setup == "foreign-names":
        files["bounding_box_test"].append("DSC0001.jpg")
    elif setup == "other-dataset":
        args[1] = request.getfixturevalue("duke_attribute_file")
    elif setup == "not-matlab":
        args[1] = tmp_path / "attributes.mat"
        args[1].write_text("not a MATLAB file\n" * 20)
    elif setup == "no-attributes":
        args = []
    root = make_tree(tmp_path / "market", files)
    code, out, err = run(capsys, root, *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err and out == ""

"""``segindex eval ...`` end to end: make a set, index it with given masks, evaluate, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from segindex.cli import main


def run(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evalset") / "set"
    run("eval", "make-set", str(out), "--n", "5", "--seed", "0", "--size", "128x160")
    return out


def test_make_set_is_reproducible(made: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    run("eval", "make-set", str(again), "--n", "5", "--seed", "0", "--size", "128x160")
    assert _files(made) == _files(again)
    other = tmp_path / "other"
    run("eval", "make-set", str(other), "--n", "5", "--seed", "1", "--size", "128x160")
    assert _files(made) != _files(other)
    assert len(list((made / "images").glob("*.jpg"))) == 5
    pan = json.loads((made / "panoptic.json").read_text())
    inst = json.loads((made / "instances.json").read_text())
    assert len(pan["annotations"]) == 5
    assert sum(len(a["segments_info"]) for a in pan["annotations"]) == len(inst["annotations"])


def test_given_masks_index_evaluates_end_to_end(made: Path, tmp_path: Path) -> None:
    index = tmp_path / "gt.segindex"
    out = run(
        "ingest", str(made / "images"), "--index", str(index), "--segmenter", "coco",
        "--segmenter-option", f"annotations={made / 'panoptic.json'}",
        "--segmenter-option", f"images_root={made / 'images'}",
        "--embedder", "fake", "--min-area", "1", "--json",
    )  # fmt: skip
    assert json.loads(out)["failed"] == 0
    seg = json.loads(
        run(
            "eval",
            "segmentation",
            "--pred",
            str(index),
            "--gt",
            str(made / "panoptic.json"),
            "--json",
        )  # fmt: skip
    )
    assert seg["pq"] == 1.0 and seg["miou"] == 1.0
    assert seg["images"]["with_prediction"] == 5
    report = tmp_path / "ret"
    text = run(
        "eval", "retrieval", "--index", str(index), "--gt", str(made / "instances.json"),
        "-k", "1", "-k", "5", "--template", "a photo of a {}.", "--template", "a {}",
        "-o", str(report),
    )  # fmt: skip
    assert "text_map" in text and "ann_recall@10" in text and "1.0000" in text
    for name in ("result.json", "report.md", "pr_curve.png", "per_class.png", "scores.png"):
        assert (report / name).stat().st_size > 0, name
    result = json.loads((report / "result.json").read_text())
    assert result["options"]["templates"] == ["a photo of a {}.", "a {}"]
    assert result["ann"]["recall"] == 1.0
    assert "## Text -> region, per class" in (report / "report.md").read_text()


def test_segmentation_from_coco_files_with_report(made: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    text = run(
        "eval", "segmentation", "--pred", str(made / "instances.json"),
        "--gt", str(made / "panoptic.json"), "-o", str(out),
    )  # fmt: skip
    assert "pq" in text and "1.0000" in text
    for name in ("result.json", "report.md", "per_class.png", "scores.png"):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert result["summary"]["pq"] == 1.0 and result["summary"]["boundary_iou"] == 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["eval", "make-set", "X", "--size", "big"], "HEIGHTxWIDTH"),
        (["eval", "segmentation", "--pred", "nope.json", "--gt", "nope.json"], "not found"),
        (["eval", "retrieval", "--index", "nope", "--gt", "g.json", "--template", "x"], "{}"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert message in res.output

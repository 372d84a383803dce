"""The CLI end to end (in-process with the fake backends; by subprocess in test_real_models)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from segindex.cli import main


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def ingest(photos: Path, index: Path, *extra: str) -> tuple[int, str, str]:
    return run(
        "ingest",
        str(photos),
        "--index",
        str(index),
        "--segmenter",
        "fake",
        "--embedder",
        "fake",
        *extra,
    )


def test_ingest_search_info_export(photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "p.segindex"
    (photos / "junk.gif").write_bytes(b"GIF89a broken")
    code, out, err = ingest(photos, index)
    assert code == 0, err
    assert "indexed 4 images (11 regions)" in out and "failed 1" in out
    assert "junk.gif" in err

    code, out, _ = ingest(photos, index, "--json")
    report = json.loads(out)
    assert code == 0 and report["skipped"] == 5 and report["indexed"] == 0

    code, out, _ = run("search", "red", "--index", str(index), "-k", "2", "--json")
    hits = json.loads(out)
    assert code == 0 and [h["label"] for h in hits] == ["red", "red"]
    assert set(hits[0]) >= {"region_id", "image_path", "bbox", "rle", "similarity", "score"}

    code, out, _ = run("search", "yellow", "--index", str(index), "-k", "1")
    assert code == 0 and "yellow" in out and "c.png" in out and "similarity" in out

    q = tmp_path / "q.png"
    from PIL import Image

    from segindex.testing.fakes import draw_scene

    Image.fromarray(draw_scene([], background="orange")).save(q)
    code, out, _ = run("search", "--image", str(q), "--index", str(index), "-k", "1", "--json")
    assert code == 0 and json.loads(out)[0]["label"] == "orange"

    code, out, _ = run("info", "--index", str(index))
    assert code == 0
    assert "4 indexed, 1 failed" in out and "junk.gif" in out and "vectors.faiss" in out
    info = json.loads(run("info", "--index", str(index), "--json")[1])
    assert info["counts"]["regions"] == 11 and info["vector_dim"] == 13

    out_file = tmp_path / "coco.json"
    code, out, _ = run("export", "--index", str(index), "-o", str(out_file))
    assert code == 0 and "wrote 11 regions of 4 images" in out
    assert len(json.loads(out_file.read_text())["annotations"]) == 11


def test_errors_are_one_line_without_traceback(photos: Path, tmp_path: Path) -> None:
    code, _, err = run("search", "red", "--index", str(tmp_path / "missing"))
    assert code == 1 and err.startswith("error: no segindex index") and "Traceback" not in err

    index = tmp_path / "p.segindex"
    ingest(photos, index)
    code, _, err = run("search", "--index", str(index))
    assert code == 2 and "exactly one" in err and "Traceback" not in err
    code, _, err = run("search", "red", "--index", str(index), "-k", "0")
    assert code == 2 and "positive" in err
    code, _, err = run("ingest", str(photos), "--index", str(index), "--embedder", "open_clip")
    assert code == 1 and "refusing" in err and "Traceback" not in err
    code, _, err = run(
        "ingest",
        str(tmp_path / "nope"),
        "--index",
        str(tmp_path / "n.segindex"),
        "--segmenter",
        "fake",
        "--embedder",
        "fake",
    )
    assert code == 2 and "no images found" in err
    code, _, err = run(
        "ingest",
        str(photos),
        "--index",
        str(tmp_path / "u.segindex"),
        "--segmenter",
        "nonesuch",
        "--embedder",
        "fake",
    )
    assert code == 2 and "unknown segmenter 'nonesuch'" in err and "panoptic" in err


def test_help_is_fast_and_lists_commands() -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from segindex.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch','transformers','open_clip','faiss',"
            "'sqlalchemy') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    for cmd in ("ingest", "search", "info", "export", "backends"):
        assert cmd in r.stdout
    assert "HEAVY []" in r.stdout

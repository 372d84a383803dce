"""Search without PyTorch (issue 22): once the CLIP towers are exported, a search process (the
Python API, ``segindex search``, ``segindex serve``) answers text and image queries with the
exported towers and the numpy tokenizer; a subprocess in which importing torch fails proves it.
A query that needs a model with no export still works, and only then imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segindex.testing.blocked_imports import MARK, blocking_prelude

pytest.importorskip("openvino")

#: run first in every subprocess: importing torch fails, and each attempt is reported
NO_TORCH = blocking_prelude("torch")


def run_python(code: str, env: dict[str, str], *, block_torch: bool = True) -> str:
    """Run ``code`` in a fresh interpreter (torch blocked); return its stdout, fail on any error
    or any attempt to import torch."""
    script = (NO_TORCH if block_torch else "") + textwrap.dedent(code)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert MARK not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, photos_dir: Path) -> dict[str, Any]:
    """An index of the shared photos (fake segmenter, the tiny CLIP on OpenVINO: its towers
    exported into a private compiled cache), and the environment that finds that cache."""
    from segindex import Index
    from segindex.config import RuntimeOptions
    from segindex.search import make_query
    from segindex.testing.fakes import register_fakes
    from segindex.testing.tiny_clip import save_tiny_open_clip

    root = tmp_path_factory.mktemp("no-torch")
    env = {k: v for k, v in os.environ.items() if k != "SEGINDEX_RUNTIME"}
    env.update(SEGINDEX_COMPILED_CACHE=str(root / "compiled"), HF_HUB_OFFLINE="1")
    before = os.environ.get("SEGINDEX_COMPILED_CACHE")
    os.environ["SEGINDEX_COMPILED_CACHE"] = env["SEGINDEX_COMPILED_CACHE"]
    try:
        register_fakes()
        clip = save_tiny_open_clip(root / "clip")
        path = root / "idx.segindex"
        options = {"model": str(clip)}
        with Index.create(
            path,
            segmenter="fake",
            embedder="open_clip",
            embedder_options=options,
            runtime=RuntimeOptions(device="cpu", runtime="openvino"),
        ) as index:
            index.ingest([photos_dir])
        # the same queries through torch, for comparison
        with Index.open(path, runtime=RuntimeOptions(device="cpu", runtime="torch")) as index:
            text = index.embed_query(make_query("red", templates=None))[0]
            image = index.embed_query(make_query(image=photos_dir / "a.png"))[0]
            hits = [h.region_id for h in index.search(text="red", k=5)]
    finally:
        if before is None:
            os.environ.pop("SEGINDEX_COMPILED_CACHE", None)
        else:
            os.environ["SEGINDEX_COMPILED_CACHE"] = before
    return {
        "path": path,
        "env": env,
        "photo": photos_dir / "a.png",
        "text": text,
        "image": image,
        "hits": hits,
    }


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    from segindex.testing.fakes import draw_scene

    root = tmp_path_factory.mktemp("photos")
    scenes = {
        "a.png": [("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90))],
        "b.png": [("green", (5, 5, 45, 60)), ("red", (70, 20, 100, 80))],
    }
    for name, shapes in scenes.items():
        Image.fromarray(draw_scene(shapes, background="gray")).save(root / name)
    return root


def test_python_api_answers_text_and_image_queries_without_torch(exported: dict) -> None:  # type: ignore[type-arg]
    code = f"""
    import json, sys
    from segindex import Index
    from segindex.search import make_query
    with Index.open({str(exported["path"])!r}) as index:
        text = index.embed_query(make_query("red", templates=None))[0]
        image = index.embed_query(make_query(image={str(exported["photo"])!r}))[0]
        hits = [h.region_id for h in index.search(text="red", k=5)]
        print(json.dumps({{"text": text.tolist(), "image": image.tolist(), "hits": hits,
                          "embedder": type(index.embedder).__name__}}))
    assert "torch" not in sys.modules and "open_clip" not in sys.modules
    """
    got = json.loads(run_python(code, exported["env"]).strip().splitlines()[-1])
    assert got["embedder"] == "ExportedClipEmbedder"
    assert float(np.dot(got["text"], exported["text"])) > 0.999
    assert float(np.dot(got["image"], exported["image"])) > 0.999
    assert got["hits"] == exported["hits"]


def test_cli_search_without_torch(exported: dict) -> None:  # type: ignore[type-arg]
    code = f"""
    import sys
    from segindex.cli import main
    try:
        main(["search", "red", "--index", {str(exported["path"])!r}, "-k", "5", "--json"])
    except SystemExit as e:
        if e.code:
            raise
    """
    out = run_python(code, exported["env"])
    hits = json.loads(out)
    ids = [h["region_id"] for h in (hits["hits"] if isinstance(hits, dict) else hits)]
    assert ids == exported["hits"]


def test_service_warms_up_and_answers_without_torch(exported: dict) -> None:  # type: ignore[type-arg]
    code = f"""
    import json, sys, time
    from fastapi.testclient import TestClient
    from segindex import Index
    from segindex.service import create_app
    with Index.open({str(exported["path"])!r}) as index:
        app = create_app(index)
        with TestClient(app) as client:  # the lifespan warm-up runs here
            warm = index.models.loaded_embedder is not None
            health = client.get("/health").json()
            t0 = time.perf_counter()
            r = client.post("/search", json={{"text": "red", "k": 5}})
            first = time.perf_counter() - t0
            assert r.status_code == 200, r.text
        print(json.dumps({{"warm": warm, "health": health, "first_s": first,
                          "readiness_torch": app.state.readiness.torch}}))
    """
    got = json.loads(run_python(code, exported["env"]).strip().splitlines()[-1])
    assert got["warm"] is True and got["health"]["status"] == "ok"
    assert got["readiness_torch"] is False


def test_a_query_needing_a_model_without_export_still_works(exported: dict) -> None:  # type: ignore[type-arg]
    """runtime=torch asks for the torch towers: the same search then imports torch (and gives
    the same hits)."""
    code = f"""
    import json, sys
    from segindex import Index
    from segindex.config import RuntimeOptions
    with Index.open({str(exported["path"])!r}, runtime=RuntimeOptions(runtime="torch")) as index:
        hits = [h.region_id for h in index.search(text="red", k=5)]
    print(json.dumps({{"hits": hits, "torch": "torch" in sys.modules}}))
    """
    got = json.loads(run_python(code, exported["env"], block_torch=False).strip().splitlines()[-1])
    assert got == {"hits": exported["hits"], "torch": True}


def test_the_blocker_catches_torch(exported: dict) -> None:  # type: ignore[type-arg]
    """The harness itself: a process that imports torch fails it."""
    script = NO_TORCH + "\ntry:\n    import torch\nexcept ImportError:\n    pass\n"
    out = subprocess.run(
        [sys.executable, "-c", script], env=exported["env"], capture_output=True, text=True
    )
    assert f"{MARK}: torch" in out.stderr

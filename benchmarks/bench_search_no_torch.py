"""Search without PyTorch (issue 22, parts 4 and 5): ``segindex serve`` and ``segindex search``
with the CLIP towers exported to OpenVINO (no torch imported) against the torch runtime, and the
first-run error of a search whose model is missing (nothing cached, Hub unreachable).

Setup (in this process, with torch): real-size open_clip ViT-B-32 with random weights, written
into a private Hugging Face cache as the default model's files (``laion2b_s34b_b79k``), so the
index is exactly what ``segindex ingest`` makes with the default embedder; ~1,000 synthetic
images (rows and vectors written directly, as bench_service.py does); one ingest-side export of
the towers to OpenVINO (fp32) into a private compiled cache.

Measured, each server a separate ``segindex serve`` process, runtimes alternated:

* serve start -> ``/health`` answers -> first text query answered (wall, from process start);
* 100 distinct text queries (``POST /search``, k=20): p50/p95; 20 whole-image upload queries;
* the server's resident memory (RSS) after those queries, and whether it imported torch;
* one-shot ``segindex search TEXT`` processes (wall);
* ``segindex search x`` on that index with an empty Hub cache, no export, ``HF_HUB_OFFLINE``
  unset and the Hub unreachable: wall time and the error line.

    flock /work/notes/bench.lock python benchmarks/bench_search_no_torch.py [--images 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import TEXTS, build  # noqa: E402

REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
#: (runtime, precision) of the servers compared: OpenVINO as auto chooses it here (bf16 on CPUs
#: with native bf16), OpenVINO fp32, and PyTorch (today's path, fp32 on a CPU)
CONFIGS = [("openvino", "auto"), ("openvino", "fp32"), ("torch", "auto")]
CLI = [sys.executable, "-c", "from segindex.cli import main; main()"]


def put_random_default_clip(cache: Path) -> Path:
    """Random ViT-B-32 weights as the Hub cache holds the default model's safetensors file."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    commit = "0" * 40
    folder = cache / f"models--{REPO.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(snap / "open_clip_model.safetensors"))
    return snap / "open_clip_model.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, content_type: str) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=120) as r:
        return dict(json.loads(r.read()))


def multipart(image: bytes, query: dict[str, Any]) -> tuple[bytes, str]:
    boundary = "segindexbench"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + image
        + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
        f"{json.dumps(query)}\r\n".encode(),
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def memory(pid: int) -> tuple[dict[str, int], bool]:
    """Resident memory (MiB: total, anonymous, file-backed) of process ``pid`` and whether it
    mapped a torch library."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {
        line.split(":")[0]: int(line.split()[1])
        for line in status.splitlines()
        if line.startswith(("VmRSS", "RssAnon", "RssFile"))
    }
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {k: round(v / 1024) for k, v in kb.items()}, "/torch/" in maps


def summary(ms: list[float]) -> dict[str, float]:
    q = np.percentile(ms, [50, 95])
    return {"p50_ms": round(float(q[0]), 1), "p95_ms": round(float(q[1]), 1), "n": len(ms),
            "mean_ms": round(statistics.fmean(ms), 1)}  # fmt: skip


def serve_run(
    index: Path, runtime: str, precision: str, env: dict[str, str], upload: bytes
) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [*CLI, "serve", "--index", str(index), "--port", str(port), "--runtime", runtime]
    args += ["--precision", precision]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, env={**env, "SEGINDEX_LOG": "warning"}, stderr=subprocess.PIPE, text=True
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    health = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.02)
        health_s = time.perf_counter() - t0
        body = json.dumps({"text": "a red umbrella", "k": 20}).encode()
        post(f"{base}/search", body, "application/json")
        first_s = time.perf_counter() - t0
        text_ms = []
        for i in range(100):
            body = json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} {i}", "k": 20}).encode()
            t = time.perf_counter()
            post(f"{base}/search", body, "application/json")
            text_ms.append((time.perf_counter() - t) * 1000)
        image_ms = []
        for i in range(20):
            data, ctype = multipart(upload, {"k": 20, "offset": i})
            t = time.perf_counter()
            post(f"{base}/search", data, ctype)
            image_ms.append((time.perf_counter() - t) * 1000)
        rss_mb, torch_loaded = memory(proc.pid)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    ready = [line for line in err.splitlines() if "query encoders ready" in line]
    return {
        "runtime": runtime,
        "precision": precision,
        "health_s": round(health_s, 2),
        "first_answer_s": round(first_s, 2),
        "warm_up_line": ready[0] if ready else "",
        "health": health,
        "text_query": summary(text_ms),
        "image_query_upload_640x480": summary(image_ms),
        "rss_mb_after_120_queries": rss_mb,
        "torch_mapped": torch_loaded,
    }


def cli_search(index: Path, runtime: str, precision: str, env: dict[str, str]) -> dict[str, Any]:
    args = [*CLI, "search", "a red umbrella", "--index", str(index), "-k", "10"]
    args += ["--runtime", runtime, "--precision", precision]
    t = time.perf_counter()
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    return {
        "runtime": runtime,
        "precision": precision,
        "wall_s": round(time.perf_counter() - t, 2),
        "rc": out.returncode,
    }


def offline_first_run(
    args: list[str], env: dict[str, str], empty_home: Path, cwd: Path
) -> dict[str, Any]:
    """A command on a machine where nothing is cached and the Hub cannot be reached."""
    bare = {k: v for k, v in env.items() if not k.startswith(("HF_", "SEGINDEX_COMPILED"))}
    bare["HF_HOME"] = str(empty_home)  # empty Hub cache, and no compiled cache beside it
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        out = subprocess.run(
            [*CLI, *args], env=bare, capture_output=True, text=True, timeout=300, cwd=cwd
        )
        runs.append((time.perf_counter() - t, out))
    seconds = [r[0] for r in runs]
    last = runs[-1][1]
    return {
        "wall_s": [round(s, 2) for s in seconds],
        "median_s": round(statistics.median(seconds), 2),
        "rc": last.returncode,
        "output": (last.stdout + last.stderr).strip(),
        "endpoint": bare.get("HF_ENDPOINT", "https://huggingface.co (default)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="serve runs per runtime")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results") / "search_no_torch.json"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep (and reuse) the model files and index here"
    )
    args = parser.parse_args()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, root: Path) -> None:
    """Set up under ``root`` (reusing what is there) and measure."""
    from huggingface_hub import constants
    from PIL import Image

    from segindex import Index
    from segindex.config import RuntimeOptions

    hf_home = root / "hf"
    cache = hf_home / "hub"
    compiled = root / "compiled"
    index_path = root / f"bench-{args.images}.segindex"
    if not (cache / f"models--{REPO.replace('/', '--')}").is_dir():
        put_random_default_clip(cache)
    constants.HF_HUB_CACHE = str(cache)
    os.environ["SEGINDEX_COMPILED_CACHE"] = str(compiled)
    env = {k: v for k, v in os.environ.items() if k not in ("SEGINDEX_RUNTIME",)}
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        SEGINDEX_COMPILED_CACHE=str(compiled),
    )
    t0 = time.perf_counter()
    if index_path.is_dir():
        idx = Index.open(index_path, runtime=RuntimeOptions(device="cpu", runtime="openvino"))
        idx.embedder  # noqa: B018 - exports the towers if the compiled cache lacks them
    else:
        idx = build(
            index_path,
            args.images,
            embedder_options={"model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"},
            runtime=RuntimeOptions(device="cpu", runtime="openvino"),
        )
    counts = idx.store.counts()
    idx.close()
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(buf, "JPEG")
    upload = buf.getvalue()

    serve: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for runtime, precision in CONFIGS:
            serve.append(serve_run(index_path, runtime, precision, env, upload))
            print(json.dumps(serve[-1]), flush=True)
    cli = [cli_search(index_path, *config, env) for _ in range(2) for config in CONFIGS]
    photos = root / "photos"
    photos.mkdir(exist_ok=True)
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(photos / "a.png")
    offline = {
        "search": offline_first_run(
            ["search", "x", "--index", str(index_path)], env, root / "empty-hf", root
        ),
        "ingest": offline_first_run(
            ["ingest", "photos", "--index", "fresh.segindex"], env, root / "empty-hf", root
        ),
    }

    report = {
        "load_average_1_5_15_at_end": [round(x, 1) for x in os.getloadavg()],
        "index": {**counts, "build_s": round(build_s, 1)},
        "embedder": "open_clip ViT-B-32 (default model files, random weights), CPU",
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu(), "python": platform.python_version()},
        "serve": serve,
        "cli_search": cli,
        "offline_first_run": offline,
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()

"""benchmarks/bench_scenes.py at a tiny size: it builds its synthetic index (images with boxes
and masks, videos with tracks), times both scene queries, finds every query's hits equal to its
brute-force evaluation, and writes its RESULTS.md section (replaced, not repeated, on a rerun)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_bench_scenes_small_run_is_exact_and_writes_its_section(tmp_path: Path) -> None:
    from bench_scenes import main

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Another section\n\nkept\n")
    argv = ["--n", "2000", "--workdir", str(tmp_path / "w"), "--results", str(results)]
    res = main([*argv, "--queries", "12", "--check", "1"])
    assert res["check_ok"], res["check"]
    assert res["n_images"] == 160 and res["n_videos"] >= 2 and res["n_tracks"] >= 16
    for key in ("images", "videos"):
        r = res[key]
        assert r["queries"] >= 1 and r["hits_median"] >= 1, r  # each query holds in its own
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["rounds_median"] >= 1, r
    main([*argv, "--queries", "8", "--check", "0", "--reuse"])  # the index built above
    text = results.read_text()
    assert text.count("## Compositional search latency at 2,000 regions") == 1
    assert "## Another section\n\nkept" in text
    assert "(a) `a & b & LeftOf(a, b)`, images" in text
    assert "a WITH b DURING 2s THEN c WITHIN 10s" in text

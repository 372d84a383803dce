"""benchmarks/bench_scale.py at a tiny size: it writes its synthetic index through Store.write,
builds the ANN index, measures every row of its table in fresh processes, finds the exact
(flat) index equal to brute force over the float32 originals, and writes its RESULTS.md section
(replaced, not repeated, on a rerun) and its JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_bench_scale_small_run_measures_every_row_and_writes_its_section(tmp_path: Path) -> None:
    from bench_scale import main

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Another section\n\nkept\n")
    out = tmp_path / "scale.json"
    argv = ["--n", "2000", "--workdir", str(tmp_path / "w"), "--results", str(results)]
    argv += ["--json", str(out), "--mask-pool", "100", "--queries", "20", "--cold", "fadvise"]
    argv += ["--filter-queries", "8"]
    res = main(argv)
    assert res["n"] == 2000 and res["ann"]["kind"] == "flat" and res["ann"]["vectors"] == 2000
    assert res["rows_per_s"] > 0 and res["reindex_s"] >= 0
    # every region has an RLE; the whole index is more than its masks
    assert 5 < res["rle_bytes_per_region"] < res["disk_bytes_per_region"]
    assert res["rss_bytes_per_region"] > 0 and res["open_s"] > 0 and res["cold_open_s"] > 0
    assert 0 < res["region_p50_ms"] <= res["region_p90_ms"] and res["cold_p50_ms"] > 0
    # flat is exact: equal to brute force over what a float16 store holds
    assert res["recall_at_10_f16"] == 1.0 and res["recall_at_10"] >= 0.9
    assert [r["filter"].split()[0] for r in res["filtered"]] == ["labels"] * 3 + ["adversarial"] * 2
    for row in res["filtered"]:
        assert row["recall_f16"] == 1.0 and row["recall_at_10"] >= 0.8, row
    assert 0.005 < res["filtered"][0]["allowed"] / 2000 < 0.03  # 1 label of 80, segments only
    assert json.loads(out.read_text())["disk_bytes_per_region"] == res["disk_bytes_per_region"]
    main([*argv, "--reuse"])  # the index and ground truth built above, measured again
    text = results.read_text()
    assert text.count("## Scale: 2,000 regions (bench_scale.py") == 1
    assert "## Another section\n\nkept" in text
    assert "| measure | target @10M | this run |" in text and ", 8 region queries;" in text
    assert "| region rows written per second (SQLite, one process) | ≥ 60,000 |" in text

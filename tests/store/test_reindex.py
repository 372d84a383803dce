"""``Index.reindex`` / ``segindex reindex``: rebuild the FAISS file from SQL as another kind
without models; the kind is remembered, survives reopen, repair, deletes and growth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segindex import Index
from segindex.cli import main
from segindex.errors import ConfigError
from segindex.store.kinds import KindSpec


def ranking(idx: Index, text: str = "blue", k: int = 6) -> list[tuple[int, float]]:
    return [(h.region_id, round(h.similarity, 5)) for h in idx.search(text, k=k, scope="all")]


def test_reindex_changes_kind_keeps_results_and_persists(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    assert idx.vectors.kind == "flat"  # auto, small
    before = ranking(idx)
    embedder_calls = len(idx.embedder.image_calls)
    described = idx.reindex("hnsw")
    assert described["kind"] == "hnsw" and described["vectors"] == idx.vectors.ntotal
    assert len(idx.embedder.image_calls) == embedder_calls  # no model ran
    assert ranking(idx) == before  # tiny index: HNSW answers exactly
    assert idx.kind_spec.kind == "hnsw"
    assert idx.check().clean
    path = idx.path
    idx.close()
    with Index.open(path) as again:
        assert again.vectors.kind == "hnsw" and again.vectors.mapped
        assert ranking(again) == before
        assert again.info()["vector_index"]["kind"] == "hnsw"
        again.reindex("flat")
        assert again.vectors.kind == "flat" and ranking(again) == before


def test_hnsw_index_deletes_reingests_and_checks_clean(make_index, photos: Path) -> None:
    idx = make_index(vector_index=KindSpec(kind="hnsw"))
    idx.ingest(photos)
    assert idx.vectors.kind == "hnsw"
    first = idx.store.indexed_images()[0]
    removed = idx.delete_images([first.id])
    assert removed > 0
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert all(h.image_id != first.id for h in idx.search("red", k=50, scope="all"))
    assert idx.check().clean  # the saved file holds exactly the live ids (tombstones are -1)
    idx.ingest(photos)  # the deleted image comes back
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert idx.check().clean


def test_auto_kind_migrates_after_ingest_crosses_threshold(make_index, photos: Path) -> None:
    idx = make_index(vector_index=KindSpec(flat_max=5, hnsw_max=1_000))
    idx.ingest(photos / "a.png")
    assert idx.vectors.ntotal < 5 and idx.vectors.kind == "flat"
    idx.ingest(photos)
    assert idx.vectors.ntotal >= 5 and idx.vectors.kind == "hnsw"
    assert idx.check().clean


def test_ivfpq_with_too_few_vectors_stays_flat(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    assert idx.reindex("ivfpq")["kind"] == "flat"  # recorded: becomes IVF-PQ once trainable
    assert idx.kind_spec.kind == "ivfpq"


def test_repair_rebuilds_in_the_configured_kind(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    idx.reindex("hnsw")
    (idx.path / "vectors.faiss").write_bytes(b"garbage")
    assert idx.check().stale and not idx.check().clean
    assert idx.repair().clean
    assert idx.vectors.kind == "hnsw"


def test_search_vectors_batch_matches_single_searches(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    q = np.stack([idx.embedder.embed_texts([t])[0] for t in ("red", "blue", "green")])
    batch = idx.search_vectors_batch(q, k=3, scope="all")
    for vec, hits in zip(q, batch, strict=True):
        single = idx.search_vector(vec, k=3, scope="all")
        assert [h.region_id for h in hits] == [h.region_id for h in single]
    from segindex.errors import QueryError

    with pytest.raises(QueryError, match=r"queries must be \(Q, 13\)"):
        idx.search_vectors_batch(q[:, :5])


def test_cli_reindex(tmp_path: Path, photos: Path) -> None:
    path = tmp_path / "cli.segindex"
    with Index.create(path, segmenter="fake", embedder="fake") as idx:
        idx.ingest(photos)
    r = CliRunner().invoke(main, ["reindex", "--index", str(path), "--kind", "hnsw", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["kind"] == "hnsw" and out["spec"]["kind"] == "hnsw"
    r = CliRunner().invoke(main, ["reindex", "--index", str(path), "--factory", "HNSW8,Flat"])
    assert r.exit_code == 0 and "rebuilt as hnsw" in r.stdout
    r = CliRunner().invoke(main, ["check", "--index", str(path)])
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["reindex", "--index", str(path), "--kind", "annoy"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["reindex", "--index", str(path), "--factory", "LSH"])
    assert r.exit_code == 2 and "segindex builds Flat" in r.output


def test_reindex_parameters_are_applied_and_remembered(make_index, photos: Path) -> None:
    import faiss

    idx = make_index()
    idx.ingest(photos)
    assert KindSpec().ef_construction == 100  # the default graph quality
    idx.reindex("hnsw", ef_construction=64, ef_search=48, hnsw_m=12)
    inner = faiss.downcast_index(idx.vectors.faiss_index.index)
    assert inner.hnsw.efConstruction == 64 and inner.hnsw.nb_neighbors(1) == 12
    assert (idx.kind_spec.ef_construction, idx.kind_spec.ef_search) == (64, 48)
    idx.reindex()  # keeps the configured kind and parameters
    assert idx.kind_spec.hnsw_m == 12 and idx.vectors.kind == "hnsw"
    with pytest.raises(ConfigError, match="unknown index-kind parameter.*ef_constructoin"):
        idx.reindex(ef_constructoin=10)
    with pytest.raises(ConfigError, match="ef_search must be an integer"):
        idx.reindex(ef_search="wide")
    assert idx.kind_spec.ef_search == 48  # a refused change changes nothing


def test_cli_reindex_set(tmp_path: Path, photos: Path) -> None:
    path = tmp_path / "cli.segindex"
    with Index.create(path, segmenter="fake", embedder="fake") as idx:
        idx.ingest(photos)
    args = ["reindex", "--index", str(path), "--kind", "hnsw", "--json"]
    r = CliRunner().invoke(main, [*args, "--set", "ef_construction=50", "--set", "ef_search=20"])
    assert r.exit_code == 0, r.output
    spec = json.loads(r.stdout)["spec"]
    assert (spec["ef_construction"], spec["ef_search"]) == (50, 20)
    r = CliRunner().invoke(main, [*args, "--set", "efsearch=20"])
    assert r.exit_code == 2 and "unknown index-kind parameter(s) efsearch" in r.output


def test_reindex_spec_and_parameters_are_exclusive(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    with pytest.raises(ConfigError, match="either spec= or kind"):
        idx.reindex(spec=KindSpec(kind="hnsw"), ef_search=64)

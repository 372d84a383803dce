"""Filtered-search recall and latency (issue 11, part 3): does a filtered query return the true
best k allowed regions, at every selectivity and for filters that remove the query's
neighbourhood?

    python benchmarks/bench_filtered.py --n 100000 --kinds flat,hnsw,ivfpq   # ~3 min, 2 cores
    python benchmarks/bench_filtered.py --n 1000000 --kinds hnsw             # ~15 min, 2 cores

``bench_search.py`` runs the same table on its real 1M-region index (``filtered_table``).

Filters, over ``(N,)`` ids of ``(N, D)`` clustered unit vectors (like ``bench_search.py``):

* random s:      a fixed random ``s`` share of the ids (the same set for every query, as a label
                 or score filter is);
* adversarial s: per query, the ``s`` share of the ids LEAST similar to that query (what
                 ``exclude_labels=["person"]`` does to a query whose best matches are people).

recall@10 is measured against exact search over the allowed ids (numpy, float32); for IVF-PQ
also against the best its quantised scores can do (``recall_pq``: the same PQ codes searched
exhaustively, every list probed, only allowed ids). p50 is the median latency of one
single-query ``VectorIndex.search(q, 10, allowed_ids=...)`` (3 timed calls per query after a
warm one, with the same read-only allowed array, as the store hands out one per filter); with
``--baseline`` the two implementations are timed alternately, query by query.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_search import clustered  # noqa: E402

CASES: tuple[tuple[str, float], ...] = (
    ("random", 0.001),
    ("random", 0.01),
    ("random", 0.1),
    ("random", 0.5),
    ("random", 0.9),
    ("adversarial", 0.5),
    ("adversarial", 0.9),
)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    a.flags.writeable = False  # as the store's shared per-filter arrays
    return a


def allowed_sets(
    case: str, share: float, ids: np.ndarray, sims: np.ndarray, seed: int = 5
) -> list[np.ndarray]:
    """Sorted read-only ``(m,)`` int64 allowed ids, one array per query (``sims (Q, N)``)."""
    m = max(1, int(round(share * len(ids))))
    if case == "random":
        pos = np.random.default_rng(seed).choice(len(ids), m, replace=False)
        one = _frozen(np.sort(ids[pos]))
        return [one] * len(sims)
    return [_frozen(np.sort(ids[np.argpartition(row, m - 1)[:m]])) for row in sims]


def _pq_reference(vi: Any, q: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """``(k,)`` ids: the IVF-PQ codes searched exhaustively over the allowed ids."""
    import faiss

    params = faiss.SearchParametersIVF(nprobe=vi.nlist, sel=faiss.IDSelectorBatch(allowed))
    return vi.faiss_index.search(q[None], k, params=params)[1][0]  # type: ignore[no-any-return]


def filtered_table(
    vi: Any, ids: np.ndarray, x: np.ndarray, queries: np.ndarray, k: int = 10
) -> list[dict[str, Any]]:
    """One row per case of :data:`CASES`: recall@k and p50 latency of ``vi.search``.

    ids: ``(N,)`` int64 held by ``vi``; x: ``(N, D)`` float32 their vectors (row i is ids[i]);
    queries: ``(Q, D)`` L2-normalised float32."""
    return compare_filtered({"": vi}, ids, x, queries, k)[""]


def compare_filtered(
    indexes: dict[str, Any],
    ids: np.ndarray,
    x: np.ndarray,
    queries: np.ndarray,
    k: int = 10,
    reps: int = 3,
) -> dict[str, list[dict[str, Any]]]:
    """:func:`filtered_table` for several indexes of the same vectors (implementations before
    and after a change), timed alternately query by query (``reps`` timed calls each, after one
    warm call), so that the load of a shared machine falls on all of them alike."""
    sims = queries @ x.T
    order = np.argsort(ids)
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in indexes}
    for case, share in CASES:
        sets = allowed_sets(case, share, ids, sims)
        recalls: dict[str, list[float]] = {name: [] for name in indexes}
        recalls_pq: dict[str, list[float]] = {name: [] for name in indexes}
        times: dict[str, list[float]] = {name: [] for name in indexes}
        for qi, (q, allowed) in enumerate(zip(queries, sets, strict=True)):
            pos = order[np.searchsorted(ids, allowed, sorter=order)]
            best = allowed[np.argsort(-sims[qi, pos], kind="stable")[:k]]
            for name, vi in indexes.items():  # warm: selector and lookups cached
                _, got = vi.search(q[None], k, allowed_ids=allowed)
                recalls[name].append(len(set(got[0].tolist()) & set(best.tolist())) / len(best))
                if vi.kind == "ivfpq":
                    ref = _pq_reference(vi, q, k, allowed)
                    hit = len(set(got[0].tolist()) & set(ref.tolist())) / len(ref)
                    recalls_pq[name].append(hit)
            for _ in range(reps):
                for name, vi in indexes.items():
                    t = time.perf_counter()
                    vi.search(q[None], k, allowed_ids=allowed)
                    times[name].append(time.perf_counter() - t)
        for name, vi in indexes.items():
            row = {
                "filter": f"{case} {share * 100:g} %",
                "allowed": len(sets[0]),
                "recall_at_10": round(float(np.mean(recalls[name])), 3),
                "min_recall": round(float(np.min(recalls[name])), 2),
                "p50_ms": round(1000 * statistics.median(times[name]), 2),
            }
            if recalls_pq[name]:
                row["recall_pq"] = round(float(np.mean(recalls_pq[name])), 3)
            tables[name].append(row)
            print(vi.kind, name, row, flush=True)
    return tables


def markdown(kind: str, n: int, rows: list[dict[str, Any]], before: list[dict[str, Any]]) -> str:
    """The table for one kind; ``before``: the same cases measured with ``--baseline``."""
    pq = kind == "ivfpq"
    cols = ["filter", "allowed", "recall@10", "min", "p50 ms"]
    cols += ["recall vs PQ"] if pq else []
    cols += ["before: recall@10", "before: p50 ms"] if before else []
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i, r in enumerate(rows):
        cells = [r["filter"], f"{r['allowed']:,}", r["recall_at_10"], r["min_recall"], r["p50_ms"]]
        cells += [r["recall_pq"]] if pq else []
        cells += [before[i]["recall_at_10"], before[i]["p50_ms"]] if before else []
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return f"{kind} ({n:,} vectors):\n\n" + "\n".join(lines)


def load_impl(path: Path | None) -> type:
    """``VectorIndex`` of the package, or of another copy of ``vectors.py`` (to compare)."""
    if path is None:
        from segindex.store.vectors import VectorIndex

        return VectorIndex
    spec = importlib.util.spec_from_file_location("vectors_under_test", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.VectorIndex  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3, help="timed calls per query and index")
    ap.add_argument("--kinds", default="flat,hnsw,ivfpq")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/segindex-bench-filtered"))
    ap.add_argument(
        "--baseline", type=Path, help="another vectors.py to measure first (before a change)"
    )
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    from segindex.store.kinds import KindSpec

    impls = {"after": load_impl(None)}
    if args.baseline:
        impls = {"before": load_impl(args.baseline), **impls}
    x = clustered(args.n, args.dim, seed=1)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    queries = clustered(args.queries, args.dim, seed=99)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def sample(m: int) -> np.ndarray:  # IVF-PQ training vectors
        return x[np.sort(rng.choice(args.n, m, replace=False))]

    out: dict[str, Any] = {"n": args.n, "dim": args.dim}
    for kind in args.kinds.split(","):
        spec = KindSpec(kind=kind)  # type: ignore[arg-type]
        path = args.workdir / f"{kind}-{args.n}-{args.dim}.faiss"
        if not path.exists():  # kept: every implementation and run measures the same index
            t0 = time.perf_counter()
            chunks = [(ids[s : s + 50_000], x[s : s + 50_000]) for s in range(0, args.n, 50_000)]
            impls["after"].build(args.dim, spec, args.n, chunks, sample=sample).save(path)
            print(kind, "built in", round(time.perf_counter() - t0, 1), "s", flush=True)
        loaded = {name: impl.load(path, args.dim, spec=spec) for name, impl in impls.items()}
        for name, rows in compare_filtered(loaded, ids, x, queries, reps=args.reps).items():
            out[f"{kind}_{name}"] = rows
        del loaded
        before = out.get(f"{kind}_before", [])
        print(markdown(kind, args.n, out[f"{kind}_after"], before), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""FAISS vector index whose ids are the SQL region ids (``IndexIDMap2`` over inner product).

Vectors are L2-normalised float32, so inner product is cosine similarity. The file is a cache of
the vectors kept in SQL: it is written atomically (temp file + fsync + rename) and rebuilt from
SQL whenever it does not hold exactly the ids the SQL store holds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _faiss():  # type: ignore[no-untyped-def]
    import faiss

    return faiss


class VectorIndex:
    """Exact inner-product search over ``(N, D)`` float32 vectors keyed by int64 ids."""

    def __init__(self, dim: int, index: object | None = None) -> None:
        faiss = _faiss()
        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self._index.d != dim:  # type: ignore[attr-defined]
            raise ValueError(f"vector index has dimension {self._index.d}, expected {dim}")  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        return cls(dim, _faiss().read_index(str(path)))

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves either the old file or the new one, never a mix."""
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)  # type: ignore[attr-defined]

    def ids(self) -> np.ndarray:
        """Sorted ``(N,)`` int64 ids held."""
        ids = _faiss().vector_to_array(self._index.id_map)  # type: ignore[attr-defined]
        return np.sort(ids.astype(np.int64))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``(N, D)`` float32 vectors under ``(N,)`` int64 ids."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(
                f"vectors must be ({len(ids)}, {self.dim}) float32, got shape {vectors.shape}"
            )
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))  # type: ignore[attr-defined]

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        sel = _faiss().IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self._index.remove_ids(sel))  # type: ignore[attr-defined]

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for ``(Q, D)`` float32 queries.

        Returns ``(similarities (Q, k) float32, ids (Q, k) int64)``, id ``-1`` where fewer than
        ``k`` vectors exist. ``allowed_ids`` restricts the search inside FAISS (ID selector), so
        ``k`` hits come back whenever ``k`` allowed vectors exist.
        """
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}) float32, got shape {queries.shape}")
        k = max(1, min(k, self.ntotal)) if self.ntotal else 1
        if allowed_ids is None:
            return self._index.search(queries, k)  # type: ignore[attr-defined,no-any-return]
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
        params = faiss.SearchParameters(sel=sel)
        return self._index.search(queries, k, params=params)  # type: ignore[attr-defined,no-any-return]

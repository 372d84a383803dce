"""Search reads the SQL rows of the best candidates only, and reads further when a candidate's
row vanished (its image deleted or replaced between the vector search and the read)."""

from __future__ import annotations

from typing import Any

from segindex.search.rank import _rows_of_best


class Rows:
    def __init__(self, present: set[int]) -> None:
        self.present, self.calls = present, []

    def region_rows(self, ids: list[int]) -> dict[int, Any]:
        self.calls.append(list(ids))
        return {i: f"row{i}" for i in ids if i in self.present}


RANKED = [(-0.9, 5), (-0.8, 2), (-0.7, 9), (-0.6, 4), (-0.5, 7), (-0.4, 1)]


def test_reads_only_the_best_needed() -> None:
    store = Rows({5, 2, 9, 4, 7, 1})
    assert _rows_of_best(store, RANKED, 3) == {5: "row5", 2: "row2", 9: "row9"}
    assert store.calls == [[5, 2, 9]]


def test_reads_further_for_vanished_rows() -> None:
    store = Rows({5, 9, 7, 1})  # 2 and 4 were deleted meanwhile
    assert set(_rows_of_best(store, RANKED, 3)) == {5, 9, 7, 1}
    assert store.calls == [[5, 2, 9], [4, 7, 1]]  # one more read, a few rows ahead


def test_fewer_candidates_than_needed() -> None:
    store = Rows({5})
    assert set(_rows_of_best(store, RANKED[:2], 4)) == {5}
    assert store.calls == [[5, 2]]

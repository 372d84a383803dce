"""The region-queries notebook runs top to bottom with the fake backends and draws its masks."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "region_queries.ipynb"


def test_region_queries_notebook_runs_and_shows_masks(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # box, points, mask and similar-to results with their masks
    text = "".join(o.get("text", "") for o in outputs)
    assert "query region from 'box'" in text and "query region from 'segment'" in text

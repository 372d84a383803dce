"""Open-vocabulary names for class-agnostic regions: CLIP zero-shot over a vocabulary.

SAM-like segmenters return masks without classes (``label_id == -1``, label ``object``). At ingest
the crop vector each region gets anyway is compared with the text vectors of a vocabulary
(:class:`~segindex.config.LabelPolicy`; COCO-panoptic names by default), so label filters work on
such regions too. Text vectors are computed once per (embedder, vocabulary) and cached.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence

import numpy as np

from segindex.config import LabelPolicy
from segindex.embed.base import Embedder
from segindex.regions import Regions

_TEXT_CACHE: weakref.WeakKeyDictionary[Embedder, dict[tuple[str, ...], np.ndarray]] = (
    weakref.WeakKeyDictionary()
)
#: COCO-panoptic name decorations that read badly in a CLIP prompt ("sky-other-merged")
_DECORATIONS = re.compile(r"-(merged|other|stuff)\b")


def prompt_name(name: str) -> str:
    """A class name as CLIP should read it: ``"wall-other-merged"`` -> ``"wall"``."""
    return _DECORATIONS.sub("", name).replace("-", " ").replace("_", " ").strip() or name


def text_vectors(embedder: Embedder, vocabulary: Sequence[str]) -> np.ndarray:
    """``(V, D)`` L2-normalised float32 text vectors of the vocabulary (prompt-ensembled), cached
    per embedder and vocabulary."""
    key = tuple(vocabulary)
    per_embedder = _TEXT_CACHE.setdefault(embedder, {})
    if key not in per_embedder:
        per_embedder[key] = embedder.embed_texts([prompt_name(v) for v in key])
    return per_embedder[key]


def label_regions(
    crop_vectors: np.ndarray,
    embedder: Embedder,
    vocabulary: Sequence[str],
    temperature: float = 100.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-shot names for crops.

    crop_vectors: ``(N, D)`` L2-normalised float32 image vectors of the region crops (from
                  ``embedder``)
    Returns ``(label_ids (N,) int64 positions in vocabulary, labels (N,) object str,
    confidences (N,) float32 softmax probabilities in [0, 1])``.
    """
    if not len(vocabulary):
        raise ValueError("vocabulary must name at least one class")
    crop_vectors = np.asarray(crop_vectors, dtype=np.float32)
    if crop_vectors.ndim != 2 or crop_vectors.shape[1] != embedder.dim:
        raise ValueError(
            f"crop_vectors must be (N, {embedder.dim}) float32, got shape {crop_vectors.shape}"
        )
    names = np.empty(len(crop_vectors), dtype=object)
    if not len(crop_vectors):
        return np.zeros(0, np.int64), names, np.zeros(0, np.float32)
    logits = temperature * crop_vectors @ text_vectors(embedder, vocabulary).T  # (N, V)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    ids = probs.argmax(axis=1).astype(np.int64)
    names[:] = [vocabulary[i] for i in ids]
    return ids, names, probs[np.arange(len(ids)), ids].astype(np.float32)


def name_class_agnostic(
    regions: Regions,
    kinds: Sequence[str],
    vectors: np.ndarray,
    embedder: Embedder,
    policy: LabelPolicy,
) -> Regions:
    """``regions`` with every class-agnostic segment (kind ``segment``, ``label_id == -1``) named.

    ``vectors`` are the regions' crop vectors, row for row. A named region gets its vocabulary
    position as ``label_id``, the name as ``label`` and the zero-shot probability as ``score``
    (as a panoptic region's score is its class probability); below ``policy.min_confidence`` it
    is left as it was. Other regions are returned untouched.
    """
    if not policy.enabled or not len(regions):
        return regions
    todo = np.flatnonzero(
        (regions.label_ids == -1) & (np.asarray(kinds, dtype=object) == "segment")
    )
    if not len(todo):
        return regions
    ids, names, conf = label_regions(vectors[todo], embedder, policy.names(), policy.temperature)
    sure = conf >= policy.min_confidence
    todo, ids, names, conf = todo[sure], ids[sure], names[sure], conf[sure]
    label_ids, labels, scores = (
        regions.label_ids.copy(),
        regions.labels.copy(),
        regions.scores.copy(),
    )
    label_ids[todo], labels[todo], scores[todo] = ids, names, conf
    return Regions(
        masks=regions.masks,
        boxes=regions.boxes,
        label_ids=label_ids,
        labels=labels,
        scores=scores,
        is_thing=regions.is_thing,
    )


__all__ = ["label_regions", "name_class_agnostic", "prompt_name", "text_vectors"]

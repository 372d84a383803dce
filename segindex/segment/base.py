"""Base class of segmenters: one abstract batch method, the base does validation and batching."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from segindex.regions import Regions


def check_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is an ``HxWx3`` uint8 RGB array."""
    if (
        not isinstance(image, np.ndarray)
        or image.ndim != 3
        or image.shape[2] != 3
        or image.dtype != np.uint8
    ):
        raise ValueError(
            f"image must be HxWx3 uint8 RGB, got shape {getattr(image, 'shape', None)} "
            f"dtype {getattr(image, 'dtype', None)}"
        )


class Segmenter(ABC):
    """Turns images into ``Regions`` (masks at the original resolution).

    Subclasses implement :meth:`_segment_batch`; callers use :meth:`segment`.
    """

    #: registry name; set by subclasses
    name: str = ""
    #: True if the backend can turn box/point prompts into masks (SAM-like)
    promptable: bool = False
    #: True if the backend needs each image's source path, not only its pixels (e.g. masks
    #: read from ground-truth files); its ``_segment_batch`` then also receives ``paths``
    needs_paths: bool = False
    #: True if the backend segments named concepts (SAM 3): the index hands it its label
    #: vocabulary through :meth:`use_vocabulary` before ingesting
    wants_vocabulary: bool = False
    #: True if :meth:`segment_text` finds every instance of a text in an image
    segments_text: bool = False
    #: True if :meth:`prompt_each` turns many boxes, each with its own points, into one mask
    #: each from a single encoder pass (SAM-like backends; used by SAM refinement)
    prompts_each: bool = False
    #: the image encoder whose passes an embedder may reuse instead of encoding again (the
    #: ``sam_onnx`` backend's ONNX encoder, see :mod:`segindex.embed.sam_features`); ``None``
    #: for backends that share none
    encoder: Any = None

    def segment(
        self,
        images: Sequence[np.ndarray],
        batch_size: int = 2,
        *,
        paths: Sequence[str] | None = None,
        prepared: Sequence[Any] | None = None,
    ) -> list[Regions]:
        """Segment ``HxWx3`` uint8 RGB images; one ``Regions`` per image, in order.

        paths: the image files the pixels came from, parallel to ``images``; required by
               backends with ``needs_paths`` (and passed on only to them), ignored by others.
        prepared: what :meth:`preprocessor` made of each image (``None`` entries allowed),
               parallel to ``images``; passed on only to backends that have a preprocessor.
        """
        for im in images:
            check_image(im)
        if prepared is not None and len(prepared) != len(images):
            raise ValueError(f"got {len(prepared)} prepared inputs for {len(images)} images")
        if prepared is not None and self.preprocessor() is None:
            prepared = None
        if self.needs_paths:
            if paths is None or len(paths) != len(images):
                from segindex.errors import ConfigError

                got = "none" if paths is None else str(len(paths))
                raise ConfigError(
                    f"segmenter {self.name!r} needs the source path of each image: "
                    f"got {got} paths for {len(images)} images"
                )
        out: list[Regions] = []
        for start in range(0, len(images), batch_size):
            batch = list(images[start : start + batch_size])
            extra: dict[str, Any] = {}
            if self.needs_paths:
                extra["paths"] = [str(p) for p in paths[start : start + batch_size]]  # type: ignore[index]  # checked above
            if prepared is not None:
                extra["prepared"] = list(prepared[start : start + batch_size])
            results = self._segment_batch(batch, **extra)
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{type(self).__name__} returned {len(results)} results for {len(batch)} images"
                )
            for im, r in zip(batch, results, strict=True):
                if r.image_size != im.shape[:2]:
                    raise RuntimeError(
                        f"{type(self).__name__} returned masks of size {r.image_size} "
                        f"for an image of size {im.shape[:2]}"
                    )
            out.extend(results)
        return out

    @abstractmethod
    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        """Segment one batch of validated images (``needs_paths`` backends also take
        ``paths: list[str]``, backends with a :meth:`preprocessor` ``prepared: list``, both
        parallel to ``images``)."""

    def preprocessor(self) -> Callable[[np.ndarray], Any] | None:
        """A picklable function from one ``HxWx3`` uint8 RGB image to this backend's network
        input (resized, normalised), or ``None``.

        The ingest runner calls it in its decode worker processes, so resizing and normalising
        overlap the model work of the previous batch; the results come back through
        ``segment(..., prepared=...)``. It must give exactly what the backend computes itself
        from the image, and ``_segment_batch`` must accept ``prepared`` entries that are
        ``None`` (decoded inline, or the preprocessor failed on that image)."""
        return None

    def prompt(
        self,
        image: np.ndarray,
        *,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
    ) -> Regions:
        """Masks for prompts on one ``HxWx3`` uint8 RGB image (promptable backends only).

        boxes:        ``(B, 4)`` float32 XYXY pixels; one mask per box
        points:       ``(P, 2)`` float32 XY pixels, with ``point_labels`` ``(P,)`` int
                      (1 foreground, 0 background); used together with a single box, or alone
                      for one mask
        """
        from segindex.errors import ConfigError

        raise ConfigError(f"segmenter {self.name!r} cannot segment from box/point prompts")

    def prompt_each(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        points: list[np.ndarray],
        point_labels: list[np.ndarray],
    ) -> Regions:
        """One mask per box on one ``HxWx3`` uint8 RGB image, each refined by its own points
        (backends with :attr:`prompts_each` only).

        boxes: ``(B, 4)`` float XYXY pixels; points[i]: ``(P_i, 2)`` float XY pixels with
        point_labels[i] ``(P_i,)`` int (1 foreground, 0 background), ``P_i`` may be 0.
        """
        from segindex.errors import ConfigError

        raise ConfigError(
            f"segmenter {self.name!r} cannot turn many box prompts into masks in one pass "
            f"(a SAM backend such as 'sam' or 'sam_onnx' can)"
        )

    def segment_text(self, image: np.ndarray, texts: str | Sequence[str]) -> Regions:
        """Every instance of each text in one ``HxWx3`` uint8 RGB image (backends with
        :attr:`segments_text` only)."""
        from segindex.errors import ConfigError

        raise ConfigError(
            f"segmenter {self.name!r} cannot segment from text (a concept segmenter such as "
            f"'sam3' can)"
        )

    def use_vocabulary(self, names: Sequence[str]) -> None:
        """Take the index's label vocabulary ``names`` (backends with :attr:`wants_vocabulary`
        segment these concepts); other backends ignore it."""
        return None

    def describe(self) -> dict[str, Any]:
        """Settings that identify this segmenter's output (stored with the index)."""
        return {"name": self.name}

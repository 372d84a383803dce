"""The reference to one frame of a video: ``"<video path>#frame=<index>"``.

Ingest hands it, in place of a file path, to segmenters that declare ``needs_paths`` (e.g. the
given-video-masks segmenter, which looks the frame up in YouTube-VIS ground truth), and the
YouTube-VIS export names each sampled frame with it. :class:`FrameRef` builds and parses it, so
that both sides read the same format.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "#frame="


@dataclass(frozen=True)
class FrameRef:
    """Frame ``index`` (0-based, in decoding order) of the video at ``path``."""

    path: str
    index: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"frame index must be an integer >= 0, got {self.index!r}")

    def to_str(self) -> str:
        """``"<video path>#frame=<index>"``."""
        return f"{self.path}{SEPARATOR}{self.index}"

    def __str__(self) -> str:
        return self.to_str()

    @classmethod
    def parse(cls, text: str) -> FrameRef:
        """The reference written by :meth:`to_str`; ``ValueError`` for anything else (a plain
        file path, a missing or non-numeric index)."""
        path, sep, index = str(text).rpartition(SEPARATOR)
        if not sep or not path or not index.isascii() or not index.isdigit():
            raise ValueError(f"{text!r} is not a video frame ('<video>{SEPARATOR}<index>')")
        return cls(path, int(index))

    @classmethod
    def is_frame(cls, text: str) -> bool:
        """Whether ``text`` is a frame reference (:meth:`parse` would succeed)."""
        try:
            cls.parse(text)
        except ValueError:
            return False
        return True


__all__ = ["SEPARATOR", "FrameRef"]

"""CLIP's byte-level BPE tokenizer with numpy output: no torch, no open_clip import.

:class:`ClipTokenizer` gives the same ids as open_clip's ``SimpleTokenizer`` (the OpenAI CLIP
tokenizer: ftfy + HTML unescape, whitespace collapsed, lower case, the same pre-tokenising pattern,
the same merges), as an ``int64 (B, context_length)`` array instead of a ``torch.LongTensor``, so
a search process can feed an exported text tower without loading PyTorch.

The merges file is open_clip's own ``bpe_simple_vocab_16e6.txt.gz``, found on disk without
importing open_clip (importing it loads torch), or any file passed as ``bpe_path``.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError, ModelLoadError

__all__ = ["DEFAULT_CONTEXT_LENGTH", "ClipTokenizer", "default_bpe_path"]

DEFAULT_CONTEXT_LENGTH = 77
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: merges kept from the file (the vocabulary is 256 bytes x 2 + merges + 2 specials = 49408)
N_MERGES = 49152 - 256 - 2
CLEANERS = ("lower", "whitespace", "canonicalize")
_SPECIALS = ("<start_of_text>", "<end_of_text>")


def default_bpe_path() -> Path:
    """open_clip's merges file, located without importing open_clip (which imports torch).

    Raises:
        ModelLoadError: open_clip is not installed (pass ``bpe_path`` instead).
    """
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / BPE_FILE
        if path.is_file():
            return path
    raise ModelLoadError(
        f"CLIP tokenizer: {BPE_FILE} not found (it ships with open_clip_torch, which is not "
        "installed here); pass bpe_path=... to ClipTokenizer"
    )


@lru_cache(maxsize=1)
def _byte_to_unicode() -> dict[int, str]:
    """Every byte as a printable character (CLIP's reversible byte-level mapping)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


@lru_cache(maxsize=4)
def _tables(bpe_path: str, specials: tuple[str, ...]) -> tuple[dict[str, int], dict[Any, int]]:
    """``(token -> id, merge pair -> rank)`` for a merges file and the special tokens."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1 : N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    base = list(_byte_to_unicode().values())
    vocab = base + [c + "</w>" for c in base] + ["".join(m) for m in merges] + list(specials)
    return {tok: i for i, tok in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


def _basic_clean(text: str) -> str:
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _whitespace(text: str) -> str:
    return " ".join(text.split()).strip()


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _clean(text: str, how: str) -> str:
    text = _basic_clean(text)
    if how == "lower":
        return _whitespace(text).lower()
    if how == "whitespace":
        return _whitespace(text)
    # canonicalize: underscores to spaces, punctuation removed, lower case, whitespace collapsed
    return " ".join(text.replace("_", " ").translate(_NO_PUNCTUATION).lower().split()).strip()


class ClipTokenizer:
    """Texts to CLIP token ids, ``int64 (B, context_length)``, zero-padded; a text longer than
    the context is cut and its last id replaced by end-of-text (as open_clip does).

    Args:
        context_length: ids per text (77 for CLIP).
        clean: ``lower`` (CLIP), ``whitespace`` or ``canonicalize``, as open_clip's ``clean``.
        additional_special_tokens: extra special tokens after ``<start_of_text>``/``<end_of_text>``.
        bpe_path: the merges file (default: open_clip's, see :func:`default_bpe_path`).
    """

    def __init__(
        self,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        clean: str = "lower",
        additional_special_tokens: Sequence[str] | None = None,
        bpe_path: str | Path | None = None,
    ) -> None:
        if isinstance(context_length, bool) or not isinstance(context_length, int):
            raise ConfigError(f"context_length must be an int, got {context_length!r}")
        if context_length < 2:
            raise ConfigError(f"context_length must be >= 2, got {context_length}")
        if clean not in CLEANERS:
            raise ConfigError(f"clean must be one of {', '.join(CLEANERS)}, got {clean!r}")
        regex = importlib.import_module("regex")  # \p{L}/\p{N} classes, as open_clip uses

        self.context_length = context_length
        self.clean = clean
        specials = (*_SPECIALS, *(additional_special_tokens or ()))
        path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
        self.encoder, self.ranks = _tables(str(path), specials)
        self.sot_id, self.eot_id = self.encoder[specials[0]], self.encoder[specials[1]]
        self._bytes = _byte_to_unicode()
        self._cache: dict[str, list[int]] = {t: [self.encoder[t]] for t in specials}
        alternatives = "|".join(specials)
        self._pattern = regex.compile(
            alternatives + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    @classmethod
    def for_model_cfg(
        cls, model_cfg: dict[str, Any], bpe_path: str | Path | None = None
    ) -> ClipTokenizer | None:
        """The tokenizer open_clip's ``get_tokenizer`` would build for an open_clip model config
        (``{"embed_dim", "vision_cfg", "text_cfg", ...}``), or ``None`` where it would build a
        Hugging Face or SigLIP tokenizer, or reduce long texts with a mask (not done here)."""
        text_cfg = model_cfg.get("text_cfg") or {}
        if text_cfg.get("hf_tokenizer_name"):
            return None
        kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
        if kwargs.pop("reduction_mask", ""):
            return None
        unknown = set(kwargs) - {"clean", "additional_special_tokens"}
        if unknown:
            return None
        return cls(
            context_length=int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH)),
            bpe_path=bpe_path,
            **kwargs,
        )

    def encode(self, text: str) -> list[int]:
        """The BPE ids of one text, without start/end tokens and without truncation."""
        ids: list[int] = []
        for piece in self._pattern.findall(_clean(text, self.clean)):
            word = "".join(self._bytes[b] for b in piece.encode("utf-8"))
            cached = self._cache.get(word)
            if cached is None:
                cached = [self.encoder[t] for t in self._bpe(word)]
                if len(self._cache) < 100_000:
                    self._cache[word] = cached
            ids.extend(cached)
        return ids

    def _bpe(self, word: str) -> list[str]:
        """Merge the characters of ``word`` (last one marked end-of-word) by rank, lowest first."""
        parts = [*word[:-1], word[-1] + "</w>"]
        ranks = self.ranks
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:], strict=False)}
            best = min(pairs, key=lambda p: ranks.get(p, N_MERGES + 1))
            if best not in ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == best[0] and parts[i + 1] == best[1]:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """``int64 (B, context_length)`` ids of ``texts`` (one string: ``B = 1``)."""
        if isinstance(texts, str):
            texts = [texts]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"text {i} must be a str, got {type(t).__name__}")
        n = context_length or self.context_length
        out = np.zeros((len(texts), n), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > n:
                ids = ids[:n]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = ids
        return out

    def __repr__(self) -> str:
        return f"ClipTokenizer(context_length={self.context_length}, clean={self.clean!r})"

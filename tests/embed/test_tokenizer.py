"""The torch-free CLIP tokenizer gives exactly open_clip's ids, and imports no torch."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from segindex.embed.tokenizer import ClipTokenizer
from segindex.errors import ConfigError

TEXTS = [
    "",
    "a dog",
    "A photo of a RED umbrella.",
    "  lots   of\twhitespace\n\nhere  ",
    "don't we'll they've I'm you'd it's she'll",
    "numbers 12345 and 3.14159, 1e-6; 2026-12-02",
    "punctuation!!! ??? ... --- ((brackets)) [x] {y} <z>",
    "&amp;lt;html&amp;gt; entities &quot;quoted&quot; &#39;x&#39;",
    "naïve café résumé Ångström façade",
    "日本語のテキスト 中文 한국어",
    "emoji 🐶🚲🌂 and ZWJ 👩‍👩‍👧",
    "mojibake: Ã©tÃ© â€™quotedâ€™",
    "<start_of_text> inside <end_of_text> text",
    "snake_case and CamelCase and kebab-case",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a " * 100,  # longer than the context: truncated, end token kept
    "x" * 500,
]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = (
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-_()&#<>/ "
        "éèüßøñçÆŒ 日本語 🐶🌂 \t\n"
    )
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120))) for _ in range(n)]


@pytest.fixture(scope="module")
def open_clip_tokenizer():  # type: ignore[no-untyped-def]
    open_clip = pytest.importorskip("open_clip")
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.mark.parametrize("clean", ["lower", "whitespace", "canonicalize"])
def test_same_ids_as_open_clip(clean: str) -> None:
    pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    texts = TEXTS + _random_texts(300)
    theirs = SimpleTokenizer(context_length=77, clean=clean)(texts).numpy()
    ours = ClipTokenizer(context_length=77, clean=clean)(texts)
    assert ours.dtype == np.int64 and ours.shape == (len(texts), 77)
    for i, text in enumerate(texts):
        assert np.array_equal(ours[i], theirs[i]), (text, ours[i], theirs[i])


def test_same_ids_as_get_tokenizer_for_the_default_model(open_clip_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from segindex.config import DEFAULT_CLIP_MODEL

    cfg = {"text_cfg": {"context_length": 77, "vocab_size": 49408}}
    ours = ClipTokenizer.for_model_cfg(cfg)
    assert ours is not None
    assert DEFAULT_CLIP_MODEL == "ViT-B-32"
    texts = ["a photo of a dog.", "a red umbrella", *TEXTS]
    assert np.array_equal(ours(texts), open_clip_tokenizer(texts).numpy())


def test_other_context_length_and_special_tokens() -> None:
    pytest.importorskip("open_clip")
    from open_clip.tokenizer import SimpleTokenizer

    texts = TEXTS[:8]
    extra = ["<mask>"]
    theirs = SimpleTokenizer(context_length=16, additional_special_tokens=extra)
    ours = ClipTokenizer(context_length=16, additional_special_tokens=extra)
    assert np.array_equal(ours(texts), theirs(texts).numpy())
    assert np.array_equal(ours(texts, context_length=32), theirs(texts, context_length=32).numpy())
    assert np.array_equal(ours("x <mask> y"), theirs("x <mask> y").numpy())


def test_truncation_keeps_the_end_token() -> None:
    tok = ClipTokenizer(context_length=8)
    ids = tok("one two three four five six seven eight nine")
    assert ids.shape == (1, 8)
    assert ids[0, 0] == tok.sot_id and ids[0, -1] == tok.eot_id
    short = tok("dog")
    assert short[0, 0] == tok.sot_id and short[0, 2] == tok.eot_id and not short[0, 3:].any()


def test_model_cfgs_it_does_not_cover() -> None:
    assert ClipTokenizer.for_model_cfg({"text_cfg": {"hf_tokenizer_name": "bert-base"}}) is None
    masked = {"text_cfg": {"tokenizer_kwargs": {"reduction_mask": "simple"}}}
    assert ClipTokenizer.for_model_cfg(masked) is None
    tok = ClipTokenizer.for_model_cfg({"text_cfg": {"context_length": 32}})
    assert tok is not None and tok.context_length == 32


@pytest.mark.parametrize(
    "kwargs", [{"context_length": 1}, {"context_length": 7.5}, {"clean": "upper"}]
)
def test_bad_arguments(kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        ClipTokenizer(**kwargs)


def test_non_text_is_refused() -> None:
    with pytest.raises(ValueError, match="text 1 must be a str"):
        ClipTokenizer()(["ok", 3])  # type: ignore[list-item]


def test_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from segindex.embed.tokenizer import ClipTokenizer\n"
        "ids = ClipTokenizer()(['a photo of a dog'])\n"
        "heavy = [m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(ids[0, :6].tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("[49406, ")

"""Every command in README.md and docs/*.md works as written.

The fenced blocks of README.md and docs/*.md are read with their language and line number.

* A block whose fence is preceded by the line ``<!-- test: run -->`` is **run**. The runnable
  blocks of one page run in order, in one temporary folder, Python blocks in one namespace, as a
  reader would follow the page. Shell blocks may hold only ``segindex`` and ``pip install``
  commands (joined by ``&&``, continued with ``\\``, with ``#`` comments).
* Every other ``bash``/``sh``/``console``/``text`` block is **checked**: each ``segindex``
  command names a real command and only options that command's ``--help`` lists (``text``
  blocks are synopses: ``[--opt VALUE]``, ``a|b`` and ``...`` are read as such); a
  ``python``/``bash`` script, ``tests/``/``benchmarks/`` path must exist (and a script's
  ``--options`` must appear in its source); ``pip install '.[extra]'`` must name real extras.
* Every other ``python`` block is compiled and its ``segindex`` imports are imported; ``toml``
  blocks are parsed.

The substitutions made for runnable blocks, and nothing else:

1. The working folder is a fresh temporary folder holding ``photos/`` (the generated scenes
   ``a.png``, ``b.png``, ``sub/c.png``, ``sub/deeper/d.bmp`` of tests/conftest.py) and
   ``clips/walk.mkv`` (a 3 s generated video of moving squares).
2. The default Hub models are the tiny random local ones: the registered ``panoptic`` builder
   given ``model=facebook/mask2former-swin-tiny-coco-panoptic`` loads the tiny Mask2Former (at
   ``resolution=64`` unless set), and ``open_clip`` given ``ViT-B-32``/``laion2b_s34b_b79k``
   loads the tiny open_clip model. The real builders run; only the weights differ.
3. ``pip install ...`` commands are skipped (the package under test is installed already).
4. ``segindex serve`` is not started (it would not return): it is checked as above.
5. ``segindex`` runs in-process (click's ``CliRunner``), ``$PWD`` and other ``$VARS`` expanded.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from segindex.cli import main

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_MARK = "<!-- test: run -->"
SHELL = {"bash", "sh", "shell", "console", "text"}
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    runnable: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        prev = next((s.strip() for s in reversed(lines[:i]) if s.strip()), "")
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        assert j < len(lines), f"{page.name}:{i + 1}: fence never closed"
        runnable = prev == RUN_MARK
        out.append(Block(page, i + 1, lang, "\n".join(lines[i + 1 : j]), runnable))
        i = j + 1
    return out


ALL_BLOCKS = [b for page in PAGES for b in blocks_of(page)]


# --- shell commands ----------------------------------------------------------------------------


def commands(block: Block) -> list[list[str]]:
    """The commands of a shell block as token lists (prompts, comments, ``\\``, ``&&`` handled)."""
    text = block.text
    if block.lang == "console":  # only `$ ` lines are commands; the rest is output
        text = "\n".join(s[2:] for s in text.splitlines() if s.startswith("$ "))
    text = re.sub(r"\\\n", " ", text)
    out: list[list[str]] = []
    for line in text.splitlines():
        if block.lang == "text":  # a synopsis: brackets and bars are notation, not shell
            tokens = line.split("#", 1)[0].split()
        else:
            tokens = shlex.split(line, comments=True)
        current: list[str] = []
        for tok in tokens:
            if tok in ("&&", "||", ";"):
                out.append(current)
                current = []
            else:
                current.append(tok)
        out.append(current)
    return [c for c in out if c]


def strip_env(cmd: list[str]) -> list[str]:
    while cmd and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", cmd[0]):
        cmd = cmd[1:]
    return cmd


@functools.cache
def help_text(path: tuple[str, ...]) -> str:
    r = CliRunner().invoke(main, [*path, "--help"], prog_name="segindex")
    assert r.exit_code == 0, f"segindex {' '.join(path)} --help failed: {r.output}"
    return r.output


def command_paths(tokens: list[str], where: str) -> tuple[list[tuple[str, ...]], list[str]]:
    """The command path(s) named by ``segindex ...`` tokens (``a|b`` gives several) and the rest."""
    import click

    rest = [t for t in tokens[1:] if t not in ("-v", "--verbose")]
    paths: list[tuple[str, ...]] = [()]
    group: Any = main
    while rest and isinstance(group, click.Group):
        names = rest[0].split("|")
        for name in names:
            assert name in group.commands, (
                f"{where}: segindex {' '.join(paths[0])} has no command {name!r}; "
                f"it has {sorted(group.commands)}"
            )
        rest = rest[1:]
        paths = [(*p, n) for p in paths for n in names]
        group = group.commands[names[0]]
    return paths, rest


def option_names(tokens: list[str]) -> list[str]:
    names = []
    for tok in tokens:
        for part in tok.split("|"):
            part = part.strip("[]().,").split("=", 1)[0]
            if re.fullmatch(r"--?[A-Za-z][\w-]*", part):
                names.append(part)
    return names


def check_segindex(tokens: list[str], where: str) -> None:
    paths, rest = command_paths(tokens, where)
    assert paths != [()], f"{where}: `segindex` without a command"
    for path in paths:
        text = help_text(path)
        for opt in option_names(rest):
            if opt in ("-h", "--help"):
                continue
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
                f"{where}: `segindex {' '.join(path)}` has no option {opt}"
            )


def check_paths(tokens: list[str], where: str) -> None:
    for tok in tokens:
        if re.fullmatch(r"(tests|benchmarks|\.ci|notebooks)/[\w./-]+", tok):
            assert (ROOT / tok).exists(), f"{where}: {tok} does not exist"


def extras() -> set[str]:
    from importlib.metadata import metadata

    return set(metadata("segindex").get_all("Provides-Extra") or [])


def check_command(cmd: list[str], where: str) -> None:
    cmd = strip_env(cmd)
    if not cmd:
        return
    check_paths(cmd, where)
    head = cmd[0]
    if head == "segindex":
        check_segindex(cmd, where)
    elif head in ("python", "python3", "bash") and len(cmd) > 1 and not cmd[1].startswith("-"):
        script = ROOT / cmd[1]
        assert script.is_file(), f"{where}: {cmd[1]} does not exist"
        source = script.read_text()
        for opt in option_names(cmd[2:]):
            assert opt in source, f"{where}: {cmd[1]} takes no option {opt}"
    elif head == "pip" and cmd[1:2] == ["install"]:
        for tok in cmd[2:]:
            m = re.fullmatch(r"(?:\.|segindex)\[([\w,]+)\]", tok)
            if m:
                unknown = set(m.group(1).split(",")) - extras()
                assert not unknown, f"{where}: no extra {sorted(unknown)} in pyproject.toml"


# --- python blocks -----------------------------------------------------------------------------


def check_python(block: Block) -> None:
    tree = ast.parse(block.text, filename=block.where)
    compile(tree, block.where, "exec")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "segindex":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), (
                    f"{block.where}: {node.module} has no {alias.name}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "segindex":
                    importlib.import_module(alias.name)


# --- the tests ---------------------------------------------------------------------------------


def test_readme_is_short_and_points_at_the_docs() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert "bash .ci/run" in text
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in text, f"README.md does not point at docs/{page.name}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    heads = re.findall(
        r"^#+\s+(.+?)\s*$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M
    )
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_relative_links_resolve() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"
            if anchor and path.suffix == ".md":
                assert anchor in anchors(path), f"{page.relative_to(ROOT)}: no heading #{anchor}"


def test_named_source_files_exist() -> None:
    """`segindex/...` paths named in the prose (e.g. docs/architecture.md) are in the tree;
    a bare file name after one (`store/mirror.py`, `sql.py`) is looked up in that folder."""
    for page in PAGES:
        folder = ROOT / "segindex"
        for name in re.findall(r"`([\w/.]+(?:\.py|/))`", page.read_text()):
            if name.startswith("segindex/"):
                path = ROOT / name
                folder = path if name.endswith("/") else path.parent
            elif re.match(r"\w+/\w", name) and (ROOT / "segindex" / name.split("/")[0]).is_dir():
                path = ROOT / "segindex" / name
            elif "/" not in name:
                path = folder / name
            else:
                continue
            assert path.exists(), f"{page.relative_to(ROOT)} names {name}: no {path}"


def test_no_benchmark_narrative_about_a_machine() -> None:
    for page in PAGES:
        text = page.read_text().lower()
        for phrase in ("2-core vm", "this vm", "measured here"):
            assert phrase not in text, f"{page.relative_to(ROOT)} says {phrase!r}"


@pytest.mark.parametrize(
    "block",
    [b for b in ALL_BLOCKS if not b.runnable and b.lang in SHELL | {"python", "toml"}],
    ids=lambda b: b.where,
)
def test_block_is_well_formed(block: Block) -> None:
    if block.lang == "python":
        check_python(block)
    elif block.lang == "toml":
        pytest.importorskip("tomllib").loads(block.text)  # Python 3.11+
    else:
        for cmd in commands(block):
            check_command(cmd, block.where)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from segindex.testing.tiny_clip import save_tiny_open_clip
    from segindex.testing.tiny_models import save_tiny_mask2former

    root = tmp_path_factory.mktemp("tiny")
    return {
        "segmenter": save_tiny_mask2former(root / "mask2former"),
        "clip": save_tiny_open_clip(root / "clip"),
    }


@pytest.fixture
def tiny_defaults(tiny_weights: dict[str, Path]):  # type: ignore[no-untyped-def]
    """Substitution 2: the default Hub models are built from the tiny local weights."""
    from segindex import EMBEDDERS, SEGMENTERS
    from segindex.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_SEGMENTER_MODEL

    panoptic, open_clip = SEGMENTERS.get("panoptic"), EMBEDDERS.get("open_clip")

    @functools.wraps(panoptic)
    def tiny_panoptic(*args: Any, model: str = DEFAULT_SEGMENTER_MODEL, **kw: Any) -> Any:
        if model == DEFAULT_SEGMENTER_MODEL:
            model = str(tiny_weights["segmenter"])
            kw.setdefault("resolution", 64)
        return panoptic(*args, model=model, **kw)

    @functools.wraps(open_clip)
    def tiny_open_clip(
        *args: Any,
        model: str = DEFAULT_CLIP_MODEL,
        pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
        **kw: Any,
    ) -> Any:
        if (model, pretrained) == (DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED):
            model, pretrained = str(tiny_weights["clip"]), None
        return open_clip(*args, model=model, pretrained=pretrained, **kw)

    SEGMENTERS.register("panoptic", tiny_panoptic, replace=True)
    EMBEDDERS.register("open_clip", tiny_open_clip, replace=True)
    yield
    SEGMENTERS.register("panoptic", panoptic, replace=True)
    EMBEDDERS.register("open_clip", open_clip, replace=True)


@pytest.fixture
def workspace(photos: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Substitution 1: a folder with photos/ (conftest's scenes) and clips/walk.mkv."""
    from segindex.testing.clips import moving_squares, write_clip

    root = photos.parent
    (root / "clips").mkdir()
    write_clip(root / "clips" / "walk.mkv", 30, fps=10, draw=lambda i: moving_squares(i, (96, 128)))
    Image.open(photos / "a.png").load()  # the folder is complete before any block runs
    monkeypatch.chdir(root)
    monkeypatch.setenv("PWD", str(root))
    return root


def run_shell(block: Block) -> None:
    for cmd in commands(block):
        cmd = strip_env(cmd)
        if cmd[:2] == ["pip", "install"]:  # substitution 3
            continue
        assert cmd[0] == "segindex", f"{block.where}: a runnable block runs only segindex: {cmd}"
        if cmd[1:2] == ["serve"]:  # substitution 4
            check_command(cmd, block.where)
            continue
        args = [os.path.expandvars(t) for t in cmd[1:]]  # substitution 5
        r = CliRunner().invoke(main, args, prog_name="segindex")
        assert r.exit_code == 0, (
            f"{block.where}: `{shlex.join(cmd)}` exited {r.exit_code}\n{r.output}\n{r.exception!r}"
        )


RUN_PAGES = sorted({b.page for b in ALL_BLOCKS if b.runnable})


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_run(page: Path, workspace: Path, tiny_defaults: None) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in [b for b in ALL_BLOCKS if b.page == page and b.runnable]:
        if block.lang == "python":
            code = compile(block.text, block.where, "exec")
            with contextlib.redirect_stdout(None):
                exec(code, namespace)
        elif block.lang in SHELL - {"text"}:
            run_shell(block)
        else:
            pytest.fail(f"{block.where}: a runnable block must be bash or python, not {block.lang}")


def test_the_readme_runs_its_main_examples() -> None:
    runnable = [b for b in ALL_BLOCKS if b.page.name == "README.md" and b.runnable]
    assert {b.lang for b in runnable} >= {"bash", "python"}
    assert any("segindex ingest" in b.text and "segindex search" in b.text for b in runnable)

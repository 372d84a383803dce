"""The backend registry: explicit registration, entry points (built-ins and a real third-party
plugin installed as a dist-info), cheap listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segindex.errors import ConfigError, UnknownBackendError
from segindex.registry import Registry

NO_GROUP = "segindex.test_nonexistent_group"


class Widget:
    def __init__(self, size: int = 1, colour: str = "red") -> None:
        self.size = size
        self.colour = colour


class OtherWidget(Widget):
    pass


@pytest.fixture
def reg() -> Registry[Widget]:
    return Registry("widget", NO_GROUP)


def test_fresh_registry_is_empty(reg) -> None:
    assert reg.names() == []
    assert (reg.kind, reg.group) == ("widget", NO_GROUP)


def test_register_get_build_with_options(reg) -> None:
    assert reg.register("basic", Widget) is Widget
    assert reg.get("basic") is Widget
    w = reg.build("basic", size=3, colour="blue")
    assert isinstance(w, Widget) and (w.size, w.colour) == (3, "blue")
    d = reg.build("basic")
    assert (d.size, d.colour) == (1, "red")
    with pytest.raises(TypeError):
        reg.build("basic", nope=1)


def test_factory_functions_register_too(reg) -> None:
    reg.register("big", lambda **kw: Widget(size=100, **kw))
    w = reg.build("big", colour="green")
    assert (w.size, w.colour) == (100, "green")


def test_decorator_form(reg) -> None:
    @reg.register("decorated")
    class Decorated(Widget):
        pass

    assert Decorated.__name__ == "Decorated"  # the decorator returns the class itself
    assert reg.get("decorated") is Decorated
    assert isinstance(reg.build("decorated", size=2), Decorated)


def test_duplicate_refused_unless_replace(reg) -> None:
    reg.register("w", Widget)
    reg.register("w", Widget)  # the same builder again is harmless
    with pytest.raises(ValueError, match="widget 'w' is already registered"):
        reg.register("w", OtherWidget)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("w")(OtherWidget)
    assert reg.get("w") is Widget  # the refused one did not sneak in
    reg.register("w", OtherWidget, replace=True)
    assert reg.get("w") is OtherWidget


def test_unknown_name_lists_known(reg) -> None:
    with pytest.raises(UnknownBackendError, match=r"unknown widget 'x'; registered widgets: none"):
        reg.get("x")
    reg.register("zeta", Widget)
    reg.register("alpha", Widget)
    with pytest.raises(UnknownBackendError) as exc:
        reg.build("gamma", size=2)
    assert str(exc.value) == "unknown widget 'gamma'; registered widgets: alpha, zeta"
    assert isinstance(exc.value, ConfigError) and isinstance(exc.value, ValueError)


def test_names_sorted_and_unregister(reg) -> None:
    for name in ("mid", "zz", "Aa", "a"):
        reg.register(name, Widget)
    assert reg.names() == ["Aa", "a", "mid", "zz"]
    reg.unregister("mid")
    reg.unregister("never-registered")  # no error
    assert reg.names() == ["Aa", "a", "zz"]
    with pytest.raises(UnknownBackendError):
        reg.get("mid")


def test_registries_are_independent() -> None:
    a: Registry[Widget] = Registry("widget", NO_GROUP)
    b: Registry[Widget] = Registry("widget", NO_GROUP)
    a.register("only-in-a", Widget)
    assert b.names() == []


def test_builtins_from_entry_points_and_fakes_registered() -> None:
    from segindex.embed import EMBEDDERS
    from segindex.segment import SEGMENTERS

    assert {"panoptic", "fake"} <= set(SEGMENTERS.names())
    assert {"open_clip", "fake"} <= set(EMBEDDERS.names())
    assert SEGMENTERS.names() == sorted(SEGMENTERS.names())


def test_entry_point_names_are_refused_before_and_after_listing() -> None:
    """A plugin's name is taken whether or not the registry was listed first."""
    fresh: Registry[Widget] = Registry("segmenter", "segindex.segmenters")
    with pytest.raises(ValueError, match="segmenter 'panoptic' is already registered"):
        fresh.register("panoptic", Widget)
    listed: Registry[Widget] = Registry("segmenter", "segindex.segmenters")
    assert "panoptic" in listed.names()
    with pytest.raises(ValueError, match="already registered"):
        listed.register("panoptic", Widget)
    listed.register("panoptic", Widget, replace=True)
    assert listed.get("panoptic") is Widget
    gone: Registry[Widget] = Registry("segmenter", "segindex.segmenters")
    gone.unregister("panoptic")
    assert "panoptic" not in gone.names()


# ---------------------------------------------------------------------------------------------
# subprocesses: a clean interpreter, so sys.modules says what listing really imported


def run_python(code: str, extra_path: Path | None = None) -> str:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(extra_path), env.get("PYTHONPATH", "")) if p
        )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=extra_path,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_listing_builtins_does_not_import_torch() -> None:
    out = run_python(
        """
        import json, sys
        from segindex.segment import SEGMENTERS
        from segindex.embed import EMBEDDERS
        names = {"seg": SEGMENTERS.names(), "emb": EMBEDDERS.names()}
        heavy_names = ("torch", "transformers", "open_clip", "faiss")
        heavy = sorted(m for m in heavy_names if m in sys.modules)
        print(json.dumps({"names": names, "heavy": heavy,
                          "panoptic_module": "segindex.segment.panoptic" in sys.modules}))
        """
    )
    got = json.loads(out)
    assert "panoptic" in got["names"]["seg"]
    assert "open_clip" in got["names"]["emb"]
    assert got["heavy"] == []
    assert got["panoptic_module"] is False  # entry points are listed, not loaded


def test_exact_listing_does_not_import_torch_one_liner() -> None:
    out = run_python(
        "from segindex.segment import SEGMENTERS; SEGMENTERS.names(); "
        "import sys; print('torch' in sys.modules)"
    )
    assert out == "False"


PLUGIN_MODULE = '''
import numpy as np

from segindex.regions import Regions
from segindex.segment import Segmenter


class Seg(Segmenter):
    """Third-party segmenter: one mask covering the whole image."""

    name = "tinyplugin"

    def __init__(self, label: str = "everything", device: str = "cpu") -> None:
        self.label = label

    def _segment_batch(self, images):
        return [
            Regions.from_masks(np.ones((1, *im.shape[:2]), dtype=bool), labels=[self.label])
            for im in images
        ]
'''


def make_plugin(root: Path) -> None:
    """A throwaway installed distribution: dist-info with an entry point, plus its module."""
    dist = root / "tinyplugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[segindex.segmenters]\ntinyplugin = tinyplugin_mod:Seg\n"
    )
    (root / "tinyplugin_mod.py").write_text(PLUGIN_MODULE)


def test_third_party_plugin_through_a_real_entry_point(tmp_path: Path) -> None:
    make_plugin(tmp_path)
    out = run_python(
        """
        import json, sys
        import numpy as np
        from segindex.segment import SEGMENTERS, Segmenter

        names = SEGMENTERS.names()
        imported_by_listing = "tinyplugin_mod" in sys.modules
        cls = SEGMENTERS.get("tinyplugin")
        seg = SEGMENTERS.build("tinyplugin", label="all")
        image = np.zeros((5, 7, 3), dtype=np.uint8)
        (r,) = seg.segment([image])
        print(json.dumps({
            "names": names,
            "imported_by_listing": imported_by_listing,
            "cls": f"{cls.__module__}.{cls.__qualname__}",
            "is_segmenter": isinstance(seg, Segmenter),
            "n": len(r), "labels": r.labels.tolist(), "area": int(r.areas[0]),
            "box": r.boxes[0].tolist(), "size": list(r.image_size),
            "torch": "torch" in sys.modules,
        }))
        """,
        extra_path=tmp_path,
    )
    got = json.loads(out)
    assert "tinyplugin" in got["names"] and "panoptic" in got["names"]
    assert got["names"] == sorted(got["names"])
    assert got["imported_by_listing"] is False
    assert got["cls"] == "tinyplugin_mod.Seg"
    assert got["is_segmenter"] is True
    assert (got["n"], got["labels"], got["area"]) == (1, ["all"], 35)
    assert got["box"] == [0.0, 0.0, 7.0, 5.0]
    assert got["size"] == [5, 7]
    assert got["torch"] is False


def test_plugin_absent_without_its_dist_info(tmp_path: Path) -> None:
    """Control: the module alone on the path is not a plugin; the entry point is what counts."""
    (tmp_path / "tinyplugin_mod.py").write_text(PLUGIN_MODULE)
    out = run_python(
        "from segindex.segment import SEGMENTERS; print('tinyplugin' in SEGMENTERS.names())",
        extra_path=tmp_path,
    )
    assert out == "False"

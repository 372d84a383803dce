"""The shared option checks: one table of edge cases for every backend, tracker and engine."""

from __future__ import annotations

import re

import numpy as np
import pytest

from segindex.errors import ConfigError
from segindex.validate import (
    choice,
    expected_range,
    fraction,
    integer,
    number,
    optional_integer,
    optional_number,
    positive_int,
)

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("value", "bounds", "want"),
    [
        (0.5, {"lo": 0, "hi": 1}, 0.5),
        (0, {"lo": 0, "hi": 1}, 0.0),
        (1, {"lo": 0, "hi": 1}, 1.0),
        (np.float32(0.25), {"lo": 0, "hi": 1}, 0.25),
        (np.int64(3), {"lo": 0}, 3.0),
        (-7.5, {}, -7.5),
        (1e9, {"lo": 0}, 1e9),
        (0.001, {"lo": 0, "lo_open": True}, 0.001),
        (1000, {"lo": 0, "hi": 1000, "lo_open": True}, 1000.0),
    ],
)
def test_number_accepts(value: object, bounds: dict, want: float) -> None:
    got = number("x", value, **bounds)
    assert got == want and type(got) is float


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (True, {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got True"),
        (False, {"lo": 0}, "x must be a number >= 0, got False"),
        (np.bool_(True), {"lo": 0}, "x must be a number >= 0, got "),
        (NAN, {"lo": 0}, "x must be a number >= 0, got nan"),
        (INF, {"lo": 0}, "x must be a number >= 0, got inf"),
        (-INF, {}, "x must be a number, got -inf"),
        ("0.5", {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got '0.5'"),
        (None, {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got None"),
        ([0.5], {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got [0.5]"),
        (-0.1, {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got -0.1"),
        (1.5, {"lo": 0, "hi": 1}, "x must be a number in [0, 1], got 1.5"),
        (1, {"lo": 0, "hi": 1, "hi_open": True}, "x must be a number in [0, 1), got 1"),
        (0, {"lo": 0, "lo_open": True}, "x must be a number > 0, got 0"),
        (0.5, {"lo": 0.5, "hi": 1, "lo_open": True, "hi_open": True}, "in (0.5, 1), got 0.5"),
        (11, {"hi": 10}, "x must be a number <= 10, got 11"),
        (10, {"hi": 10, "hi_open": True}, "x must be a number < 10, got 10"),
    ],
)
def test_number_refuses(value: object, bounds: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        number("x", value, **bounds)


@pytest.mark.parametrize(
    ("value", "bounds", "want"),
    [(3, {"lo": 1}, 3), (np.int32(0), {"lo": 0}, 0), (-2, {}, -2), (32, {"lo": 32, "hi": 32}, 32)],
)
def test_integer_accepts(value: object, bounds: dict, want: int) -> None:
    got = integer("n", value, **bounds)
    assert got == want and type(got) is int


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (True, {"lo": 1}, "n must be an integer >= 1, got True"),
        (0, {"lo": 1}, "n must be an integer >= 1, got 0"),
        (1.5, {"lo": 1}, "n must be an integer >= 1, got 1.5"),
        (2.0, {"lo": 1}, "n must be an integer >= 1, got 2.0"),
        (NAN, {"lo": 1}, "n must be an integer >= 1, got nan"),
        ("3", {"lo": 1}, "n must be an integer >= 1, got '3'"),
        (None, {"lo": 1}, "n must be an integer >= 1, got None"),
        (9, {"lo": 1, "hi": 8}, "n must be an integer in [1, 8], got 9"),
    ],
)
def test_integer_refuses(value: object, bounds: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        integer("n", value, **bounds)


def test_optional_variants_pass_none_and_say_so() -> None:
    assert optional_number("fps", None, lo=0) is None
    assert optional_integer("resolution", None, lo=32) is None
    assert optional_number("fps", 2, lo=0) == 2.0
    assert optional_integer("resolution", 64, lo=32) == 64
    with pytest.raises(ConfigError, match=re.escape("fps must be a number > 0 or None, got 0")):
        optional_number("fps", 0, lo=0, lo_open=True)
    with pytest.raises(
        ConfigError, match=re.escape("resolution must be an integer >= 32 or None, got True")
    ):
        optional_integer("resolution", True, lo=32)


@pytest.mark.parametrize("value", [0, 0.0, 0.3, 1, 1.0])
def test_fraction_closed(value: float) -> None:
    assert fraction("min_iou", value) == float(value)


@pytest.mark.parametrize("value", [-0.01, 1.01, True, NAN, INF, "0.3", None])
def test_fraction_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match=r"min_iou must be a number in \[0, 1\], got "):
        fraction("min_iou", value)


def test_fraction_half_open() -> None:
    assert fraction("s", 0.99, hi_open=True) == 0.99
    with pytest.raises(ConfigError, match=re.escape("s must be a number in [0, 1), got 1")):
        fraction("s", 1, hi_open=True)


@pytest.mark.parametrize(("value", "ok"), [(1, True), (64, True), (0, False), (-1, False),
                                           (True, False), (1.0, False), ("1", False)])  # fmt: skip
def test_positive_int(value: object, ok: bool) -> None:
    if ok:
        assert positive_int("workers", value) == value
    else:
        with pytest.raises(ConfigError, match="workers must be an integer >= 1, got "):
            positive_int("workers", value)


def test_choice() -> None:
    assert choice("pooling", "box", ("mask", "box", "image")) == "box"
    assert choice("k", 1, [1, 2]) == 1
    with pytest.raises(ConfigError, match="pooling must be one of mask, box, image, got 'blob'"):
        choice("pooling", "blob", ("mask", "box", "image"))
    with pytest.raises(ConfigError, match="k must be one of 1, 2, got True"):
        choice("k", True, [1, 2])  # True == 1, but a bool is no option


@pytest.mark.parametrize(
    ("bounds", "text"),
    [({}, ""), ({"lo": 0}, ">= 0"), ({"lo": 0, "lo_open": True}, "> 0"), ({"hi": 1.5}, "<= 1.5"),
     ({"lo": 0, "hi": 1}, "in [0, 1]"), ({"lo": 0, "hi": 1, "lo_open": True, "hi_open": True},
     "in (0, 1)")],
)  # fmt: skip
def test_expected_range_text(bounds: dict, text: str) -> None:
    assert expected_range(**bounds) == text


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("ray_workers_true", "workers must be an integer >= 1, got True"),
        ("iou_min_iou_nan", "min_iou must be a number in [0, 1), got nan"),
        ("iou_max_missed_true", "max_missed must be an integer >= 0, got True"),
    ],
)
def test_backends_use_the_shared_checks(build: str, message: str) -> None:
    from segindex.ingest.ray_engine import RayEngine
    from segindex.track.iou import IouTracker

    makers = {
        "ray_workers_true": lambda: RayEngine(workers=True),
        "iou_min_iou_nan": lambda: IouTracker(min_iou=NAN),
        "iou_max_missed_true": lambda: IouTracker(max_missed=True),
    }
    with pytest.raises(ConfigError, match=re.escape(message)):
        makers[build]()

"""Checks of option values at the boundary, shared by every backend, tracker and engine.

Each check returns the value in its plain Python type (``float``, ``int``, ``str``) or raises
:class:`~segindex.errors.ConfigError` saying what was expected and what came::

    >>> number("min_iou", 0.3, lo=0, hi=1)
    0.3
    >>> number("min_iou", True, lo=0, hi=1)
    Traceback (most recent call last):
    ...
    segindex.errors.ConfigError: min_iou must be a number in [0, 1], got True

The same rules hold everywhere: ``bool`` is not a number (``True`` is refused, not read as 1),
NaN and infinities are refused, strings are refused (options from the CLI are parsed as JSON
before they arrive here), an integer option takes ``int`` (or a numpy integer) and refuses
``1.5`` and ``2.0`` alike.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import TypeVar

from segindex.errors import ConfigError

T = TypeVar("T")


def _bound(x: float) -> str:
    return f"{x:g}"


def expected_range(
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> str:
    """The range as the error messages write it: ``in [0, 1)``, ``>= 1``, ``> 0``, ``<= 10``,
    or ``""`` for no bound."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_bound(lo)}, {_bound(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_bound(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_bound(hi)}"
    return ""


def _in_range(x: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (x <= lo if lo_open else x < lo):
        return False
    return not (hi is not None and (x >= hi if hi_open else x > hi))


def number(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a ``float`` if it is a finite number in the range, else ``ConfigError``.

    lo, hi: bounds (``None``: unbounded on that side); ``lo_open``/``hi_open`` exclude them.
    """
    x = _number(name, value, lo, hi, lo_open, hi_open, optional=False)
    assert x is not None  # optional=False never passes None
    return x


def optional_number(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float | None:
    """Like :func:`number`, and ``None`` passes through (``... or None`` in the message)."""
    return _number(name, value, lo, hi, lo_open, hi_open, optional=True)


def integer(name: str, value: object, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer in ``[lo, hi]``, else ``ConfigError``."""
    n = _integer(name, value, lo, hi, optional=False)
    assert n is not None  # optional=False never passes None
    return n


def optional_integer(
    name: str, value: object, *, lo: int | None = None, hi: int | None = None
) -> int | None:
    """Like :func:`integer`, and ``None`` passes through (``... or None`` in the message)."""
    return _integer(name, value, lo, hi, optional=True)


def _number(
    name: str,
    value: object,
    lo: float | None,
    hi: float | None,
    lo_open: bool,
    hi_open: bool,
    *,
    optional: bool,
) -> float | None:
    if optional and value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        x = float(value)
        if math.isfinite(x) and _in_range(x, lo, hi, lo_open, hi_open):
            return x
    raise ConfigError(_message(name, "a number", value, lo, hi, lo_open, hi_open, optional))


def _integer(
    name: str, value: object, lo: int | None, hi: int | None, *, optional: bool
) -> int | None:
    if optional and value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = int(value)
        if _in_range(n, lo, hi, False, False):
            return n
    raise ConfigError(_message(name, "an integer", value, lo, hi, False, False, optional))


def fraction(name: str, value: object, *, hi_open: bool = False) -> float:
    """A number in ``[0, 1]`` (``[0, 1)`` with ``hi_open``): thresholds, IoUs, weights."""
    return number(name, value, lo=0, hi=1, hi_open=hi_open)


def positive_int(name: str, value: object) -> int:
    """An integer ``>= 1`` (counts, sizes, workers)."""
    return integer(name, value, lo=1)


def choice(name: str, value: object, options: Iterable[T]) -> T:
    """``value`` if it is one of ``options``, else ``ConfigError`` listing them."""
    allowed = list(options)
    if not isinstance(value, bool) and value in allowed:
        return allowed[allowed.index(value)]
    listed = ", ".join(str(o) for o in allowed)
    raise ConfigError(f"{name} must be one of {listed}, got {value!r}")


def phrases(name: str, values: object) -> tuple[str, ...]:
    """A non-empty list of non-blank texts (concepts, prompts), stripped; a lone string is
    refused (it would be read as its characters)."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a non-empty list of phrases, got {values!r}")
    given = list(values)
    if not given:
        raise ConfigError(f"{name} must be a non-empty list of phrases, got {values!r}")
    out = tuple(str(v).strip() for v in given)
    if not all(out):
        raise ConfigError(f"{name} must not contain empty phrases, got {given!r}")
    return out


def _message(
    name: str,
    kind: str,
    value: object,
    lo: float | None,
    hi: float | None,
    lo_open: bool,
    hi_open: bool,
    optional: bool,
) -> str:
    bounds = expected_range(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)
    expected = f"{kind} {bounds}".rstrip() + (" or None" if optional else "")
    return f"{name} must be {expected}, got {value!r}"


__all__ = [
    "choice",
    "expected_range",
    "fraction",
    "integer",
    "number",
    "optional_integer",
    "optional_number",
    "phrases",
    "positive_int",
]

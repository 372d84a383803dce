"""Methods that take another function's parameters, defined once: the keyword form of a query
(:func:`keywords_of`) and a facade's methods forwarded to its parts (:func:`forward`). Type
checkers see the parameters through ``ParamSpec``; ``help()`` and IDEs through the signature."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

__all__ = ["forward", "keywords_of"]

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")
Q = TypeVar("Q")


def keywords_of(
    make: Callable[P, Q],
) -> Callable[[Callable[[S, Q], R]], Callable[Concatenate[S, P], R]]:
    """A decorator turning a method ``run(self, query)`` into one that takes ``make``'s
    parameters, makes the query with ``make`` and runs it: the keyword form of a query is
    defined once (by ``make``), and the method's signature is ``make``'s, for type checkers
    (``ParamSpec``) and for ``help()`` and IDEs (``__signature__``)."""
    params = list(inspect.signature(make).parameters.values())

    def decorate(run: Callable[[S, Q], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(run)
        def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return run(self, make(*args, **kwargs))

        self_param = next(iter(inspect.signature(run).parameters.values()))
        signature = inspect.signature(run).replace(parameters=[self_param, *params])
        method.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect/help
        return method

    return decorate


def forward(
    part: str, method: Callable[Concatenate[Any, P], R]
) -> Callable[Concatenate[Any, P], R]:
    """A method of a facade that calls ``method`` on its part named ``part`` (the attribute
    holding it), with ``method``'s signature and documentation."""
    name = method.__name__

    @functools.wraps(method)
    def forwarded(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, getattr(getattr(self, part), name)(*args, **kwargs))

    return forwarded

"""Backends by name: a small registry fed by entry points and by explicit registration.

Built-in segmenters and embedders are declared as entry points in ``pyproject.toml`` under
``segindex.segmenters`` / ``segindex.embedders``, exactly as a third-party plugin would declare
its own.
Tests and notebooks may also call :meth:`Registry.register` at run time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from segindex.errors import UnknownBackendError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps backend names to builders (classes or factories returning a ``T``)."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._builders: dict[str, Callable[..., T] | _LazyEntryPoint] = {}
        self._entry_points_loaded = False

    def register(
        self, name: str, builder: Callable[..., T] | None = None, *, replace: bool = False
    ) -> Callable[..., T] | Callable[[Callable[..., T]], Callable[..., T]]:
        """Register ``builder`` under ``name``; a decorator when ``builder`` is omitted."""

        def add(b: Callable[..., T]) -> Callable[..., T]:
            # Read the entry points first (metadata only, no plugin import), so a name declared by a
            # plugin is refused the same whether or not the registry was already listed.
            self._load_entry_points()
            if not replace and name in self._builders and self._builders[name] is not b:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = b
            return b

        return add(builder) if builder is not None else add

    def unregister(self, name: str) -> None:
        self._load_entry_points()  # else a later first listing would bring an entry point back
        self._builders.pop(name, None)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            self._builders.setdefault(ep.name, _LazyEntryPoint(ep))

    def names(self) -> list[str]:
        """All registered backend names, sorted."""
        self._load_entry_points()
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        self._load_entry_points()
        try:
            builder = self._builders[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownBackendError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {known}"
            ) from None
        if isinstance(builder, _LazyEntryPoint):
            builder = builder.load()
            self._builders[name] = builder
        return builder

    def build(self, name: str, **options: object) -> T:
        """Instantiate the backend ``name`` with keyword ``options``."""
        return self.get(name)(**options)

    def build_on(
        self, name: str, options: Mapping[str, object], *, device: str, precision: str = "auto"
    ) -> T:
        """Instantiate ``name`` with ``options`` on ``device`` (every backend takes ``device``).

        ``precision`` is passed only to backends whose builder names a ``precision`` parameter
        (the torch ones; an ONNX graph or a fake has its own), and never overrides a
        ``precision`` already in ``options``.
        """
        builder = self.get(name)
        extra: dict[str, object] = {"device": device}
        if "precision" not in options and takes_parameter(builder, "precision"):
            extra["precision"] = precision
        return builder(**options, **extra)


def takes_parameter(builder: Callable[..., object], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(builder).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


class _LazyEntryPoint:
    """Defers importing a plugin module until the backend is first asked for."""

    def __init__(self, ep: EntryPoint) -> None:
        self.ep = ep

    def load(self) -> Callable[..., Any]:
        return self.ep.load()

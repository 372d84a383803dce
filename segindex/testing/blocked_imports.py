"""Proving that a process does not import a framework: :func:`blocking_prelude` is Python source
to run first in a subprocess. Finding the blocked packages still works (a library may look for
torch, or read a file of open_clip's), but executing one raises ``ImportError`` and prints
``IMPORTED-BLOCKED: <name>`` on stderr, so even an attempt that a library swallows is seen."""

from __future__ import annotations

import textwrap

__all__ = ["MARK", "blocking_prelude"]

#: printed on stderr for every blocked import attempt
MARK = "IMPORTED-BLOCKED"


def blocking_prelude(*packages: str) -> str:
    """Source that makes importing any of ``packages`` (and their submodules) fail."""
    return textwrap.dedent(
        f"""
        import importlib.abc, sys

        class _Refuse(importlib.abc.Loader):
            def create_module(self, spec):
                return None

            def exec_module(self, module):
                print(f"{MARK}: {{module.__name__}}", file=sys.stderr, flush=True)
                raise ImportError(f"this process must not import {{module.__name__}}")

        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] not in {tuple(packages)!r}:
                    return None
                for finder in sys.meta_path:
                    found = finder.find_spec(name, path, target) if finder is not self else None
                    if found is not None:
                        found.loader = _Refuse()
                        return found
                return None

        sys.meta_path.insert(0, _Block())
        """
    )

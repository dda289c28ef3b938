"""fxgate's ShellFunction and friends under the SDK's module names, where the SDK is absent.

Why: ShellFunction, MPIFunction and ShellResult objects -- fxgate's and the SDK's alike --
pickle by the SDK's module path (``globus_compute_sdk.sdk.shell_function`` and
``.mpi_function``), so a real endpoint loads them with its SDK. A local worker or a
client without the SDK must load the same bytes, so :func:`install` adds a finder at
the END of ``sys.meta_path``: it is asked only after the normal path finder found
nothing, so an installed SDK always wins and is never shadowed. It answers for exactly
those two modules and the two (empty) packages above them, nothing else; the SDK is not
imported to find out whether it exists (importing it costs about a second).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

from fxgate_contract import shell

_PACKAGES = ("globus_compute_sdk", "globus_compute_sdk.sdk")
_MODULES = {
    shell.SHELL_MODULE: ("ShellFunction", "ShellResult"),
    shell.MPI_MODULE: ("MPIFunction", "ShellFunction", "ShellResult"),
}


class _Loader(importlib.abc.Loader):
    """Fills a stand-in module: the packages stay empty, the two modules get fxgate's classes."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = "fxgate's stand-in for the SDK module of this name (SDK not installed)."
        for name in _MODULES.get(module.__name__, ()):
            setattr(module, name, getattr(shell, name))


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the four stand-in names; None for every other name."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in _PACKAGES:
            return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)
        if fullname in _MODULES:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


_FINDER = _Finder()
_lock = threading.Lock()


def install() -> None:
    """Make the SDK's shell and MPI function modules loadable here; idempotent, cheap."""
    with _lock:
        if _FINDER not in sys.meta_path:
            sys.meta_path.append(_FINDER)

"""The MPI launcher for an MPIFunction task on a local worker, from its resource_specification.

Why: an MPIFunction runs ``$PARSL_MPI_PREFIX <cmd>``. A Globus endpoint's MPI engine sets
that variable from the task's resource_specification and refuses a task without one;
without this module a local worker would run one process with no launcher at all. It
checks the specification as Parsl's ``validate_resource_spec`` does (same exception
name and text), finds ``mpiexec`` on the task's PATH before anything runs, and sets
the variables Parsl sets for the duration of the task only. Imported in worker
processes only (by gateway.execution).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fxgate_contract import shell

LEGAL_KEYS = frozenset({"ranks_per_node", "num_nodes", "num_ranks", "launcher_options"})
# Open MPI refuses to start as root, and more ranks than cores, unless told; MPICH
# ignores these. A value already in the task's environment (worker_env) is kept.
OPEN_MPI_ENV = {
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}
OPEN_MPI_ROOT_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
}


class InvalidResourceSpecification(Exception):
    """The task's resource_specification cannot describe an MPI run (Parsl's name and text)."""

    def __init__(self, invalid_keys: set[str], message: str = "") -> None:
        super().__init__(invalid_keys, message)
        self.invalid_keys = invalid_keys
        self.message = message

    def __str__(self) -> str:
        return f"Invalid Resource Specification Supplied: {self.invalid_keys}. {self.message}"


class LauncherNotFound(RuntimeError):
    """No MPI launcher on the task's PATH: the command was not started."""


def is_mpi_function(fn: object) -> bool:
    """True for the SDK's MPIFunction (or fxgate's stand-in for it) and fxgate's own."""
    sdk = getattr(sys.modules.get(shell.MPI_MODULE), "MPIFunction", None)
    return isinstance(fn, shell.MPIFunction) or (isinstance(sdk, type) and isinstance(fn, sdk))


def launcher_env(resource_specification: str) -> dict[str, str]:
    """The variables an MPIFunction needs, or the error a Globus MPI endpoint gives."""
    spec = _parse(resource_specification)
    if not spec:
        # Parsl's words: an MPI engine refuses a task without one (parsl issue #3427)
        raise InvalidResourceSpecification(
            set(),
            "MPI mode requires optional parsl_resource_specification keyword argument "
            "to be configured",
        )
    invalid = set(spec) - LEGAL_KEYS
    if invalid:
        raise InvalidResourceSpecification(invalid)
    nodes, per_node, ranks = _counts(spec)
    path = os.environ.get("PATH", "")
    if shutil.which("mpiexec", path=path) is None:
        raise LauncherNotFound(
            f"MPIFunction needs an MPI launcher, and mpiexec is not on the task's PATH "
            f"({path!r}); install one (Debian: openmpi-bin) or set PATH with worker_env"
        )
    options = str(spec.get("launcher_options", ""))
    prefix = " ".join(["mpiexec", "-n", str(ranks), options]).strip()
    env = {
        "PARSL_MPI_PREFIX": prefix,
        "PARSL_MPIEXEC_PREFIX": prefix,
        "PARSL_NUM_NODES": str(nodes),
        "PARSL_RANKS_PER_NODE": str(per_node),
        "PARSL_NUM_RANKS": str(ranks),
    }
    env |= OPEN_MPI_ENV | (OPEN_MPI_ROOT_ENV if os.geteuid() == 0 else {})
    return env


def _parse(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise InvalidResourceSpecification(set(), f"not JSON: {e}") from None
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise InvalidResourceSpecification(set(), "resource_specification must be an object")
    return spec


def _counts(spec: dict[str, Any]) -> tuple[int, int, int]:
    """(nodes, ranks per node, ranks): num_ranks, or num_nodes (default 1) * ranks_per_node."""
    try:
        nodes = int(spec.get("num_nodes", 1))
        ranks = int(spec["num_ranks"]) if spec.get("num_ranks") else 0
        per_node = int(spec["ranks_per_node"]) if spec.get("ranks_per_node") else 0
    except (TypeError, ValueError) as e:
        raise InvalidResourceSpecification(set(spec), f"counts must be integers: {e}") from None
    if not ranks:
        ranks = nodes * per_node
    if not per_node and ranks:
        per_node = -(-ranks // max(nodes, 1))
    if ranks < 1 or nodes < 1:
        raise InvalidResourceSpecification(
            set(spec), "give num_ranks, or num_nodes and ranks_per_node (all at least 1)"
        )
    return nodes, per_node, ranks


@contextmanager
def mpi_launcher(resource_specification: str) -> Iterator[None]:
    """Around an MPIFunction call: check (raising before it runs), set the variables, unset."""
    env = launcher_env(resource_specification)
    env = {k: v for k, v in env.items() if k.startswith("PARSL_") or k not in os.environ}
    os.environ.update(env)
    try:
        yield
    finally:
        for name in env:
            os.environ.pop(name, None)

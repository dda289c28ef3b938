"""The import graph fxgate promises: the daemon, the client and their contract stay apart.

Two views of it: what a fresh interpreter loads when it imports a package
(catches imports made by third-party code too), and every import statement
in the source, including those inside functions (catches what a run would
load only on a rare path).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAEMON_MODULES = (
    "gateway.cli, gateway.server, gateway.upstreams.local, gateway.upstreams.globus.upstream, "
    "gateway.upstreams.globus.results, gateway.upstreams.cluster.upstream"
)
# Only the engine child (its own process) imports the engine and Parsl.
ENGINE_CHILD = "gateway/upstreams/cluster/engine_child.py"


def loaded_by(imports: str, watched: set[str]) -> list[str]:
    """Which of `watched` (top-level or full module names) a fresh interpreter loads."""
    code = (
        f"import sys\nimport {imports}\n"
        "loaded = set(sys.modules) | {m.split('.')[0] for m in sys.modules}\n"
        f"print(sorted(loaded & set({sorted(watched)!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    return list(ast.literal_eval(out.stdout))


def imported_packages(package: str) -> dict[str, set[str]]:
    """Top-level package of every import statement in a package's source, by file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "_proto" in path.parts:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def offenders(package: str, forbidden: set[str]) -> dict[str, set[str]]:
    return {f: n & forbidden for f, n in imported_packages(package).items() if n & forbidden}


def test_the_daemon_never_imports_the_client() -> None:
    assert offenders("gateway", {"client"}) == {}
    assert loaded_by(DAEMON_MODULES, {"client"}) == []


def test_the_daemon_never_loads_the_user_commands() -> None:
    """gateway.cli imports a command of fxgate_cli (a client: dill, rich) only to run it."""
    assert loaded_by(DAEMON_MODULES, {"fxgate_cli", "rich"}) == []
    assert offenders("fxgate_cli", {"gateway", "sqlalchemy", "pika", "requests"}) == {}


def test_the_daemon_never_loads_dill() -> None:
    """The daemon never unpickles user data: only local worker processes import dill."""
    watched = {"dill", "fxgate_contract.serialize", "gateway.execution"}
    assert loaded_by(DAEMON_MODULES, watched) == []


def test_the_daemon_never_loads_the_shell_functions() -> None:
    """Only workers (and clients) run or load shell and MPI functions, or stand in for the SDK."""
    watched = {"fxgate_contract.shell", "fxgate_contract.sdk_shim", "gateway.mpi_launch"}
    assert loaded_by(DAEMON_MODULES, watched | {"gateway.sandbox"}) == []
    assert offenders("gateway", {"globus_compute_sdk"}) == {}


def test_a_daemon_without_metrics_never_loads_prometheus_client() -> None:
    """The metrics endpoint is off by default, and its library costs start time and memory."""
    watched = {"prometheus_client", "gateway.metrics", "gateway.metrics_http"}
    assert loaded_by(DAEMON_MODULES, watched) == []


def test_the_metrics_modules_load_neither_the_client_nor_dill() -> None:
    assert loaded_by("gateway.metrics, gateway.metrics_http", {"client", "dill"}) == []


def test_the_clients_shell_functions_need_neither_dill_nor_the_sdk() -> None:
    assert loaded_by("client.shell", {"dill", "globus_compute_sdk", "gateway"}) == []


def test_the_client_never_imports_the_daemons_packages() -> None:
    heavy = {"gateway", "sqlalchemy", "pika", "requests", "tenacity"}
    assert offenders("client", heavy) == {}
    loaded = loaded_by("client", heavy | {"globus_compute_sdk", "globus_compute_common"})
    assert loaded == []


@pytest.mark.parametrize("side", ["client", "gateway"])
def test_the_contract_imports_neither_side(side: str) -> None:
    assert offenders("fxgate_contract", {side, "sqlalchemy", "pika", "requests"}) == {}


def test_the_contract_alone_needs_no_dill() -> None:
    """All but `serialize` load with grpc and protobuf only, as the daemon uses them."""
    modules = ", ".join(
        f"fxgate_contract.{p.stem}"
        for p in sorted((ROOT / "fxgate_contract").glob("*.py"))
        if p.stem not in ("__init__", "serialize")
    )
    assert loaded_by(modules, {"dill", "client", "gateway"}) == []


def test_the_domain_types_load_no_sqlalchemy() -> None:
    """The hub and the upstreams' contract name tasks and events without the SQL."""
    modules = "gateway.hub, gateway.upstreams.base, gateway.store.records"
    assert loaded_by(modules, {"sqlalchemy"}) == []


def test_the_daemon_never_loads_the_engine_or_parsl() -> None:
    """Cluster endpoints run Globus Compute's engine in a child process: the daemon stays
    light and never holds what the engine deserializes."""
    engine = {"parsl", "globus_compute_endpoint", "zmq"}
    assert loaded_by(DAEMON_MODULES, engine) == []
    imports = {f: n & engine for f, n in imported_packages("gateway").items() if n & engine}
    assert set(imports) == {ENGINE_CHILD}

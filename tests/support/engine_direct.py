"""Drive globus-compute-endpoint's GlobusComputeEngine directly, as an endpoint does.

The cluster tests check that the engine real endpoints run works on the
private Slurm cluster, and bench/cluster_direct.py measures that engine's own
limit; both need the same few steps without fxgate in between: build a
provider, start the engine in a run dir, submit a messagepack Task (the
function, args and kwargs packed by the SDK's serializer) with an endpoint's
task future, and decode the messagepack Result the future yields.

The engine runs in the calling process: its scaling thread runs sbatch,
squeue and scancel from the calling process's environment, and the
interchange and workers it launches (`globus-compute-endpoint python-exec`)
are found on its PATH; `running_engine` sets both for the engine's lifetime.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from globus_compute_common import messagepack
from globus_compute_common.messagepack.message_types import Result, Task
from globus_compute_endpoint.engines import GlobusComputeEngine
from globus_compute_endpoint.engines.base import GCFuture
from globus_compute_sdk.serialize import ComputeSerializer, DillCodeSource
from parsl.providers import LocalProvider, SlurmProvider
from parsl.providers.base import ExecutionProvider

from tests.support.slurm import SlurmCluster

# Functions travel as source text: a worker recreates them without importing the
# test or benchmark module that defined them (so they must import what they use).
_SERDE = ComputeSerializer(strategy_code=DillCodeSource())  # type: ignore[no-untyped-call]


class TaskFailed(Exception):
    """The task's Result carried an exception; the message is the remote traceback text."""


class QuickSlurmProvider(SlurmProvider):
    """Parsl's SlurmProvider, asking Slurm for its blocks' states every `poll_s` seconds.

    The stock provider polls every 60 s, so a block cancelled under a task is
    noticed (and replaced) a minute late; endpoints' tests and benchmarks on a
    private cluster need seconds. Everything else is the stock provider.
    """

    def __init__(self, *args: Any, poll_s: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poll_s = poll_s

    @property
    def status_polling_interval(self) -> int:
        return self._poll_s


def slurm_provider(cluster: SlurmCluster, **overrides: Any) -> SlurmProvider:
    """One block of one node on the cluster's partition, at most one block at a time.

    Build it inside `running_engine`'s environment (the provider runs `sacct`
    when constructed, to choose between sacct and squeue for job states).
    """
    settings: dict[str, Any] = {
        "partition": cluster.partition,
        "nodes_per_block": 1,
        "init_blocks": 1,
        "min_blocks": 0,
        "max_blocks": 1,
        "walltime": "00:10:00",
        "poll_s": 1,
    }
    settings.update(overrides)
    return QuickSlurmProvider(**settings)


def local_provider(**overrides: Any) -> LocalProvider:
    """One block of workers on this machine, as an endpoint with LocalProvider starts it."""
    settings: dict[str, Any] = {"init_blocks": 1, "min_blocks": 0, "max_blocks": 1}
    settings.update(overrides)
    return LocalProvider(**settings)  # type: ignore[no-untyped-call]


def engine_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with this Python's bin first on PATH."""
    env = dict(os.environ if base is None else base)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Make `env` this process's environment for the block, then restore the old one."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def running_engine(
    make_provider: Callable[[], ExecutionProvider],
    run_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    **engine_kwargs: Any,
) -> Iterator[GlobusComputeEngine]:
    """A started GlobusComputeEngine on a fresh provider; shut down (blocks cancelled) on exit.

    `env` (default `engine_env()`) is the process environment for the
    engine's lifetime. `engine_kwargs` go to the engine (and through it to
    Parsl's HighThroughputExecutor): max_retries_on_system_failure,
    heartbeat_threshold, max_workers_per_node, ...
    """
    with environment(engine_env() if env is None else env):
        engine = GlobusComputeEngine(provider=make_provider(), **engine_kwargs)
        try:
            engine.start(endpoint_id=uuid.uuid4(), run_dir=str(run_dir))
            yield engine
        finally:
            engine.shutdown()


@functools.lru_cache(maxsize=64)
def _function_buffer(fn: Callable[..., Any]) -> str:
    # Serialized once per function, as a function is registered once with the
    # web service; reading its source for every task would dominate a burst.
    return _SERDE.serialize(fn)


def pack_task(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[uuid.UUID, bytes]:
    """A new task id and the messagepack Task an endpoint receives for fn(*args, **kwargs)."""
    task_id = uuid.uuid4()
    buffer = _SERDE.pack_buffers(
        [_function_buffer(fn), _SERDE.serialize(args), _SERDE.serialize(kwargs)]
    )
    return task_id, messagepack.pack(Task(task_id=task_id, task_buffer=buffer))


def submit_packed(engine: GlobusComputeEngine, task_id: uuid.UUID, packed: bytes) -> Any:
    """Hand a packed Task to the engine as an endpoint does; the endpoint's task future.

    The future's result is the packed Result bytes; `result_of` decodes it.
    """
    future = GCFuture(task_id)
    engine.submit(future, packed, resource_specification={})
    return future


def submit(engine: GlobusComputeEngine, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Pack fn(*args, **kwargs) and hand it to the engine; the endpoint's task future."""
    return submit_packed(engine, *pack_task(fn, *args, **kwargs))


def decode_result(packed: bytes) -> Any:
    """The value inside a packed Result; TaskFailed with the remote traceback if it failed."""
    result = messagepack.unpack(packed)
    if not isinstance(result, Result):
        raise TypeError(f"expected a Result message, got {type(result).__name__}")
    if result.is_error:
        raise TaskFailed(result.data)
    return _SERDE.deserialize(result.data)


def result_of(future: Any, timeout: float | None = None) -> Any:
    """Wait for an endpoint task future and decode its Result."""
    return decode_result(future.result(timeout=timeout))


def block_job_ids(engine: GlobusComputeEngine) -> list[str]:
    """The scheduler job id of every block the engine has asked its provider for."""
    return [str(job) for job in engine.executor.blocks_to_job_id.values()]

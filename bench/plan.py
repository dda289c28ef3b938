"""What the "endpoint" answers, and handing it to the publisher process.

The fake records each task's payload as the client serialized it; the result
of double(x) is 2 * x, serialized as an endpoint would (DillDataBase64). A
client can therefore check every value it gets, whichever order the tasks
were accepted upstream in, and latency samples are matched to publish times
by the upstream task id.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bench.env import BenchEnv, Worker
from bench.procs import read_json
from fxgate_contract.serialize import deserialize, serialize_data, unpack_buffers
from tests.support.fake_globus import AcceptedTask, FakeGlobus

Line = tuple[str, str, str]  # (queue, upstream task id, serialized result)


def argument_of(payload: str) -> int:
    """x of a task double(x), from its packed payload (args, kwargs)."""
    args = deserialize(unpack_buffers(payload)[0])
    return int(args[0])


def result_lines(env: BenchEnv, tasks: Iterable[AcceptedTask]) -> Iterator[Line]:
    for t in tasks:
        data = serialize_data(2 * argument_of(t.payload))
        yield env.fake.queue_name(t.task_group_id), t.task_id, data


def encode(lines: Iterable[Line]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def publish(
    env: BenchEnv,
    name: str,
    lines: Iterable[Line],
    *,
    paced: tuple[float, float] | None = None,
    timeout: float = 900,
) -> dict[str, Any]:
    """Publish results from a separate process (burst, or paced with random gaps); its times."""
    plan = env.workdir / "plans" / f"{name}.jsonl"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(encode(lines))
    times = plan.with_suffix(".times.json")
    args = ["--url", env.rabbit.url, "--input", str(plan), "--times", str(times)]
    if paced is None:
        args += ["--mode", "burst"]
    else:
        args += ["--mode", "paced", "--gap", str(paced[0]), str(paced[1])]
    proc = env.procs.spawn(name, "bench.publisher", args)
    env.procs.finish(name, proc, timeout)
    return read_json(times)


class StreamPublisher:
    """A publisher process fed on stdin while tasks arrive upstream (scenario g)."""

    def __init__(self, env: BenchEnv, name: str) -> None:
        self.env, self.name = env, name
        self.times = env.workdir / "plans" / f"{name}.times.json"
        self.times.parent.mkdir(parents=True, exist_ok=True)
        args = ["--url", env.rabbit.url, "--mode", "stream", "--times", str(self.times)]
        self.proc = env.procs.spawn(name, "bench.publisher", args, stdin=subprocess.PIPE)
        self.sent = 0

    def feed(self, tasks: list[AcceptedTask]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(encode(result_lines(self.env, tasks)))
        self.proc.stdin.flush()
        self.sent += len(tasks)

    def close(self, timeout: float = 300) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.env.procs.finish(self.name, self.proc, timeout)
        return read_json(self.times)


def _more_than(fake: FakeGlobus, count: int) -> Callable[[], bool]:
    return lambda: len(fake.accepted) > count


def feed_as_accepted(
    env: BenchEnv,
    pub: StreamPublisher,
    since: int,
    total: int,
    workers: list[Worker],
    timeout: float = 900,
) -> None:
    """Hand every task to the publisher as soon as the fake accepted it, until `total`."""
    cursor = since
    deadline = time.monotonic() + timeout
    while cursor < since + total:
        if not env.fake.wait_for(_more_than(env.fake, cursor), timeout=1.0):
            env.check_workers(workers)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {cursor - since} of {total} tasks reached the service")
            continue
        fresh = env.fake.accepted[cursor : since + total]  # the list only grows
        pub.feed(fresh)
        cursor += len(fresh)

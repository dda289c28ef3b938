"""A stalled watch stream holds a bounded buffer, then catches up from the store exactly.

In-process: a real Gateway on a real SQLite file, its watch generator driven
on a real event loop. The stream is left unread while results are committed
(as a client that stops reading does), then read to the end.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
import uuid
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask, TaskEvent

RESULTS = 20_000
MORE = 10_000  # committed while the stream catches up
RESULT_BYTES = 4096
COMMIT = 1000  # results per commit, as the upstreams group them


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = Settings(state_dir=tmp_path, db=f"sqlite:///{tmp_path / 'gateway.db'}")
    gw = Gateway(settings, Store(settings.db), {})
    gw.start()
    yield gw
    gw.stop()


def commit_results(gw: Gateway, group: str, ids: list[str], first: int) -> None:
    for i in range(0, len(ids), COMMIT):
        part = ids[i : i + COMMIT]
        done = [
            Completion(TaskState.SUCCESS, f"{first + i + n:08d}".ljust(RESULT_BYTES, "x"), t)
            for n, t in enumerate(part)
        ]
        gw.complete(done).result()


async def read_until(
    stream: AsyncGenerator[tuple[list[TaskEvent], bool], None], count: int
) -> list[TaskEvent]:
    seen: list[TaskEvent] = []
    while len(seen) < count:
        events, _ = await anext(stream)
        seen += events
    return seen


def test_a_stalled_watcher_holds_a_bounded_buffer_then_gets_every_event_once(
    gateway: Gateway,
) -> None:
    group = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    ids = gateway.store.accept(
        group, [NewTask("f", "p")] * (10 + RESULTS + MORE), str(uuid.uuid4()), []
    ).result()
    commit_results(gateway, group.id, ids[:10], 0)  # replayed before the stream goes live

    async def scenario() -> tuple[int, list[TaskEvent]]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(2) as reads:
            stream = gateway.watch(group.id, 0, reads)
            replay, done = await anext(stream)
            assert done and [e.seq for e in replay] == list(range(1, 11))
            # The stream is now subscribed; its reader stops reading.
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            stalled = ids[10 : 10 + RESULTS]
            await loop.run_in_executor(None, commit_results, gateway, group.id, stalled, 10)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            # More commits while the stream reads its backlog.
            more = ids[10 + RESULTS :]
            writer = loop.run_in_executor(
                None, commit_results, gateway, group.id, more, 10 + RESULTS
            )
            try:
                return held, await read_until(stream, RESULTS + MORE)
            finally:
                await writer
                await stream.aclose()

    held, events = asyncio.run(scenario())
    # Unbounded, the stalled stream held every result: 20,000 x 4 KB = 82 MB.
    assert held < 24 * 1024 * 1024, f"the stalled stream held {held / 1e6:.0f} MB"
    assert [e.seq for e in events] == list(range(11, 11 + RESULTS + MORE))  # each once, in order
    assert all(e.data.startswith(f"{e.seq - 1:08d}") for e in events)
    assert gateway.hub.watcher_count() == 0

"""The Hub's contract, driven directly: a real event loop reads, a real thread publishes.

gateway/hub.py is the one place where the store's writer thread hands events
to the watch streams on the server's event loop; these tests hold each of its
promises without a daemon, a store or gRPC around it. (tests/test_hub.py
covers a stalled stream's catch-up through the whole Gateway.)
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fxgate_contract.states import TaskState
from gateway.config import Settings
from gateway.core import Gateway
from gateway.hub import BUFFER_BYTES, BUFFER_EVENTS, EVENT_OVERHEAD, Hub, Subscription
from gateway.store.database import Store
from gateway.store.records import Completion, GroupInfo, NewTask, TaskEvent

T = TypeVar("T")
TIMEOUT = 30.0  # seconds a step may take before the test fails instead of hanging


def event(group_id: str, seq: int, data: str = "") -> TaskEvent:
    return TaskEvent(
        task_id=f"task-{seq}",
        group_id=group_id,
        state=TaskState.SUCCESS,
        data=data or f"result-{seq}",
        error_code="",
        error_message="",
        exception="",
        upstream_task_id="",
        completed_at=0.0,
        seq=seq,
    )


def in_thread(fn: Callable[[], None]) -> threading.Thread:
    """Run fn on a thread of its own, as the store's writer publishes."""
    thread = threading.Thread(target=fn, name="test-publisher")
    thread.start()
    return thread


async def read_until(sub: Subscription, last_seq: int) -> list[TaskEvent]:
    """Every event up to and including seq last_seq; fails if the hub closes or drops first."""
    seen: list[TaskEvent] = []
    while not seen or seen[-1].seq < last_seq:
        batch = await asyncio.wait_for(sub.next_batch(), TIMEOUT)
        assert batch is not None, "the hub closed early"
        events, behind = batch
        assert not behind, "the subscription dropped events"
        seen += events
    return seen


def test_every_subscriber_of_a_group_gets_its_events_in_seq_order_and_no_others() -> None:
    hub = Hub()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    batches = 200  # 3 events a batch: well under BUFFER_EVENTS, so nothing is ever dropped
    assert 3 * batches < BUFFER_EVENTS
    # The last batch's events are the ones each reader waits for.
    last_a, last_b = 3 * batches - 1, 3 * batches

    def publish() -> None:
        for n in range(batches):
            s = 3 * n
            hub.publish([event(a, s + 1), event(a, s + 2), event(b, s + 3)])

    async def scenario() -> tuple[list[TaskEvent], list[TaskEvent], list[TaskEvent]]:
        loop = asyncio.get_running_loop()
        subs = [hub.subscribe(a, loop), hub.subscribe(a, loop), hub.subscribe(b, loop)]
        publisher = in_thread(publish)  # while the readers wait and read
        try:
            first, second, other = await asyncio.gather(
                read_until(subs[0], last_a),
                read_until(subs[1], last_a),
                read_until(subs[2], last_b),
            )
        finally:
            await loop.run_in_executor(None, publisher.join)
        return first, second, other

    first, second, other = asyncio.run(scenario())
    expected_a = [s for n in range(batches) for s in (3 * n + 1, 3 * n + 2)]
    assert [e.seq for e in first] == expected_a
    assert [e.seq for e in second] == expected_a
    assert [e.seq for e in other] == [3 * n + 3 for n in range(batches)]
    assert {e.group_id for e in first + second} == {a}
    assert {e.group_id for e in other} == {b}


def test_a_subscription_gets_what_is_published_after_it_registers() -> None:
    hub = Hub()
    group = str(uuid.uuid4())

    async def scenario() -> list[TaskEvent]:
        loop = asyncio.get_running_loop()
        hub.publish([event(group, s) for s in range(1, 6)])  # nobody listens yet: gone
        sub = hub.subscribe(group, loop)
        await loop.run_in_executor(None, hub.publish, [event(group, s) for s in range(6, 11)])
        return await read_until(sub, 10)

    assert [e.seq for e in asyncio.run(scenario())] == list(range(6, 11))


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = Settings(state_dir=tmp_path, db=f"sqlite:///{tmp_path / 'gateway.db'}")
    gw = Gateway(settings, Store(settings.db), {})
    gw.start()
    yield gw
    gw.stop()


class FirstReadAfter(ThreadPoolExecutor):
    """The watch's store reads, with `before` run just ahead of its first replay read.

    Gateway.watch subscribes, then reads the store: whatever is committed in
    between reaches it twice, in the replay and live. This puts commits exactly there.
    """

    def __init__(self, before: Callable[[], None]) -> None:
        super().__init__(2)
        self._before: Callable[[], None] | None = before

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        before, self._before = self._before, None
        if before is None or getattr(fn, "__name__", "") != "events_after":
            self._before = before
            return super().submit(fn, *args, **kwargs)

        def first_read() -> T:
            before()
            return fn(*args, **kwargs)

        return super().submit(first_read)


def test_a_late_subscriber_skips_by_seq_what_its_replay_already_had(gateway: Gateway) -> None:
    """Results committed between subscribing and the replay read are sent once, not twice."""
    group = GroupInfo(str(uuid.uuid4()), "local", str(uuid.uuid4()), None)
    ids = gateway.store.accept(group, [NewTask("f", "p")] * 8, str(uuid.uuid4()), []).result()

    def commit(task_ids: Iterable[str]) -> None:
        gateway.complete([Completion(TaskState.SUCCESS, t, t) for t in task_ids]).result()

    commit(ids[:3])  # before the watch: replay only

    async def scenario() -> list[list[TaskEvent]]:
        with FirstReadAfter(lambda: commit(ids[3:6])) as reads:
            stream = gateway.watch(group.id, 0, reads)
            try:
                replay, done = await asyncio.wait_for(anext(stream), TIMEOUT)
                assert done
                # The three in between are in the subscription's buffer too: skipped.
                await asyncio.get_running_loop().run_in_executor(None, commit, ids[6:])
                live, done = await asyncio.wait_for(anext(stream), TIMEOUT)
                assert not done
                return [replay, live]
            finally:
                await stream.aclose()

    replay, live = asyncio.run(scenario())
    assert [e.task_id for e in replay] == ids[:6]
    assert [e.task_id for e in live] == ids[6:]  # ids[3:6] came live as well, and were dropped
    assert [e.seq for e in replay + live] == list(range(1, 9))
    assert gateway.hub.watcher_count() == 0


def test_a_buffer_at_its_limits_keeps_every_event() -> None:
    hub = Hub()
    by_count, by_size = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> list[tuple[list[TaskEvent], bool] | None]:
        loop = asyncio.get_running_loop()
        count, size = hub.subscribe(by_count, loop), hub.subscribe(by_size, loop)
        hub.publish([event(by_count, s) for s in range(1, BUFFER_EVENTS + 1)])
        hub.publish([event(by_size, 1, "x" * (BUFFER_BYTES - EVENT_OVERHEAD))])  # exactly
        return [await count.next_batch(), await size.next_batch()]

    count, size = asyncio.run(scenario())
    assert count is not None and size is not None
    assert [e.seq for e in count[0]] == list(range(1, BUFFER_EVENTS + 1)) and not count[1]
    assert len(size[0]) == 1 and not size[1]


def flood(group: str, overflow: str, first: int) -> list[TaskEvent]:
    """Events from seq `first` on that take a buffer just past one of its limits."""
    if overflow == "events":
        return [event(group, s) for s in range(first, first + BUFFER_EVENTS + 1)]
    return [event(group, s, "x" * (BUFFER_BYTES // 2)) for s in (first, first + 1)]


@pytest.mark.parametrize("overflow", ["events", "bytes"])
def test_a_full_buffer_drops_what_it_holds_and_wakes_its_reader_to_catch_up(
    overflow: str,
) -> None:
    hub = Hub()
    group = str(uuid.uuid4())
    events = flood(group, overflow, 1)

    async def scenario() -> list[tuple[list[TaskEvent], bool] | None]:
        loop = asyncio.get_running_loop()
        sub = hub.subscribe(group, loop)
        waiting = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0)  # one loop turn: the reader now waits on an empty buffer
        assert not waiting.done()
        await loop.run_in_executor(None, hub.publish, events)
        told = await asyncio.wait_for(waiting, TIMEOUT)
        marker = event(group, len(events) + 1)
        await loop.run_in_executor(None, hub.publish, [marker])
        return [told, await asyncio.wait_for(sub.next_batch(), TIMEOUT)]

    told, after = asyncio.run(scenario())
    assert told == ([], True)  # nothing held: the reader reads the store instead
    assert after == ([event(group, len(events) + 1)], False)  # buffering again since


@pytest.mark.parametrize("overflow", ["events", "bytes"])
def test_a_buffer_that_is_behind_drops_everything_until_its_reader_was_told(
    overflow: str,
) -> None:
    hub = Hub()
    group = str(uuid.uuid4())
    events = flood(group, overflow, 1)
    more = [event(group, s) for s in range(len(events) + 1, len(events) + 4)]

    def publish() -> None:  # nobody reads meanwhile
        hub.publish(events)
        hub.publish(more)

    async def scenario() -> list[tuple[list[TaskEvent], bool] | None]:
        loop = asyncio.get_running_loop()
        sub = hub.subscribe(group, loop)
        await loop.run_in_executor(None, publish)
        told = await asyncio.wait_for(sub.next_batch(), TIMEOUT)
        hub.publish([event(group, 10_000)])
        return [told, await asyncio.wait_for(sub.next_batch(), TIMEOUT)]

    told, after = asyncio.run(scenario())
    assert told == ([], True)
    assert after is not None and [e.seq for e in after[0]] == [10_000]


def test_close_wakes_every_subscription_and_ends_it() -> None:
    hub = Hub()
    a, b, c = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> list[tuple[list[TaskEvent], bool] | None]:
        loop = asyncio.get_running_loop()
        waiting = [hub.subscribe(g, loop) for g in (a, a, b)]
        holding = hub.subscribe(c, loop)
        hub.publish([event(c, 1)])  # `holding` has an event when the hub closes
        readers = [asyncio.ensure_future(s.next_batch()) for s in waiting]
        await asyncio.sleep(0)  # one loop turn: each reader now waits
        assert not any(r.done() for r in readers)
        await loop.run_in_executor(None, hub.close)  # from another thread, as the daemon does
        ended = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT)
        late = hub.subscribe(a, loop)  # after close: ended from the start
        return [
            *ended,
            await holding.next_batch(),
            await holding.next_batch(),
            await late.next_batch(),
        ]

    *ended, held, then, late = asyncio.run(scenario())
    assert ended == [None, None, None]
    assert held == ([event(c, 1)], False)  # what it held is still read first
    assert then is None and late is None
    assert hub.watcher_count() == 0


def test_watcher_count_follows_subscribe_and_close() -> None:
    hub = Hub()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        counts = [hub.watcher_count()]
        subs = [hub.subscribe(a, loop), hub.subscribe(a, loop), hub.subscribe(b, loop)]
        counts.append(hub.watcher_count())
        subs[0].close()
        subs[0].close()  # twice: no effect
        counts.append(hub.watcher_count())
        subs[2].close()  # the last of its group
        counts.append(hub.watcher_count())
        hub.close()
        counts.append(hub.watcher_count())
        subs[1].close()  # after the hub closed: no effect
        counts.append(hub.watcher_count())
        return counts

    assert asyncio.run(scenario()) == [0, 3, 2, 1, 0, 0]


def test_publishing_to_a_subscription_whose_loop_is_gone_is_harmless() -> None:
    """A stream's loop closed without unsubscribing (daemon exit): the writer must not fail."""
    hub = Hub()
    group = str(uuid.uuid4())
    loop = asyncio.new_event_loop()
    sub = hub.subscribe(group, loop)
    loop.close()
    hub.publish([event(group, 1)])  # would raise RuntimeError from call_soon_threadsafe
    assert hub.watcher_count() == 1
    sub.close()
    assert hub.watcher_count() == 0

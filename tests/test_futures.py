"""ComputeFutures share one Condition: a wake-up for one future never ends another's wait."""

from __future__ import annotations

import concurrent.futures
import threading
import tracemalloc

import pytest

from client.futures import _SHARED_CONDITION, ComputeFuture


def waiters() -> int:
    return len(_SHARED_CONDITION._waiters)  # type: ignore[attr-defined]


def test_another_futures_result_does_not_end_a_wait() -> None:
    mine, other = ComputeFuture("mine"), ComputeFuture("other")

    def resolve_both() -> None:
        with _SHARED_CONDITION:  # entered once the main thread waits (it releases the lock)
            other.set_result("not mine")  # wakes the waiting main thread
        # The main thread must wait again, not give up: once it does, finish its future.
        deadline = threading.Event()
        for _ in range(500):
            if waiters():
                break
            deadline.wait(0.01)
        mine.set_result("mine")

    with _SHARED_CONDITION:
        threading.Thread(target=resolve_both).start()
        assert mine.result(timeout=30) == "mine"


def test_timeouts_cancellation_and_exceptions_behave_as_concurrent_futures() -> None:
    f = ComputeFuture()
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.01)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.exception(timeout=0.01)
    boom = ValueError("boom")
    f.set_exception(boom)
    assert f.exception() is boom
    with pytest.raises(ValueError, match="boom"):
        f.result()
    cancelled = ComputeFuture()
    assert cancelled.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        cancelled.result()


def test_wait_and_as_completed_see_each_future() -> None:
    futures = [ComputeFuture(str(i)) for i in range(100)]
    for i, f in enumerate(futures[::2]):
        f.set_result(i)
    done, pending = concurrent.futures.wait(futures, timeout=0)
    assert done == set(futures[::2]) and pending == set(futures[1::2])
    for f in futures[1::2]:
        f.set_result(None)
    assert set(concurrent.futures.as_completed(futures, timeout=30)) == set(futures)


def test_a_future_costs_a_fraction_of_a_concurrent_futures_one() -> None:
    def bytes_each(make: type) -> float:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [make() for _ in range(10_000)]
            return (tracemalloc.get_traced_memory()[0] - before) / len(kept)
        finally:
            tracemalloc.stop()

    assert bytes_each(ComputeFuture) < 0.4 * bytes_each(concurrent.futures.Future)

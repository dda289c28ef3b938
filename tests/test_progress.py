"""The Python side of seeing your work: list_task_groups, Executor.status() and progress bars.

Against a real daemon. Progress is drawn to a StringIO (not a terminal), so
it must come as plain lines; forced, the same view draws a rich bar.
"""

from __future__ import annotations

import io
from concurrent.futures import Future

import pytest

from client import Client, Executor, as_completed_progress, progress
from client.tracking import Counts, ProgressView


def square(x: int) -> int:
    return x * x


def boom(x: int) -> int:
    raise ValueError(f"no good: {x}")


def test_executor_status_and_list_task_groups(client: Client, executor: Executor) -> None:
    assert executor.status() == dict.fromkeys(
        ["accepted", "submitted", "running", "success", "failed", "cancelled"], 0
    )  # nothing reached the daemon yet
    executor.label = "mine"
    futures = [executor.submit(square, i) for i in range(3)] + [executor.submit(boom, 1)]
    for f in futures:
        f.exception()
    counts = executor.status()
    assert (counts["success"], counts["failed"], counts["accepted"]) == (3, 1, 0)
    groups = client.list_task_groups()
    assert [g["task_group_id"] for g in groups] == [executor.task_group_id]
    g = groups[0]
    assert g["label"] == "mine" and g["total"] == 4 and g["tasks"] == counts
    assert g["endpoint_id"] == client.status()["local_endpoint_id"]
    assert client.list_task_groups(limit=0) == []
    failed = client.list_tasks(executor.task_group_id, state="failed")
    assert [t["task_id"] for t in failed] == [futures[-1].task_id]


def test_progress_waits_for_every_future_and_prints_plain_lines(executor: Executor) -> None:
    futures = [executor.submit(square, i) for i in range(5)] + [executor.submit(boom, 2)]
    out = io.StringIO()
    waited = progress(futures, "squares", file=out)
    assert waited == futures and all(f.done() for f in futures)
    text = out.getvalue()
    assert "\x1b[" not in text  # not a terminal: no control codes
    assert text.splitlines()[-1].startswith(
        "squares: 6/6 finished (5 done, 1 failed, 0 running, 0 pending)"
    ), text


def test_as_completed_progress_yields_each_future_once(executor: Executor) -> None:
    futures = [executor.submit(square, i) for i in range(4)]
    seen = list(as_completed_progress(futures, file=io.StringIO()))
    assert sorted(map(id, seen)) == sorted(map(id, futures))
    assert sorted(f.result() for f in seen) == [0, 1, 4, 9]


def test_a_forced_bar_is_drawn_with_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one line: no word of it wrapped
    out = io.StringIO()
    view = ProgressView("work", file=out, plain=False)
    assert view.is_bar
    view.update(Counts(total=4, done=3, failed=1))
    view.close()
    text = out.getvalue()
    assert "work" in text and "4/4" in text and "3 done" in text and "1 failed" in text


def test_the_plain_view_of_unfinished_work_has_no_rate_yet() -> None:
    view = ProgressView("work", plain=True, file=io.StringIO())
    counts = Counts(total=2, pending=2)
    view.update(counts)
    assert view.line(counts) == (
        "work: 0/2 finished (0 done, 0 failed, 0 running, 2 pending), 0.0/s, ETA -"
    )
    fut: Future[int] = Future()
    fut.set_result(1)
    assert progress([fut], file=io.StringIO()) == [fut]

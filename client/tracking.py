"""Progress of many tasks for a person: a rich bar in a terminal or Jupyter, plain lines elsewhere.

`progress(futures)` and `as_completed_progress(futures)` wait on futures as
concurrent.futures does and draw how far they are; `fxgate watch` draws a
task group with the same view. Where output is neither a terminal nor a
notebook (a log file, a pipe), a bar would be a stream of control codes:
the view prints a plain line now and then instead. rich is imported only
when a bar is drawn.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

# Plain lines: at most one per this many seconds while counts change.
PLAIN_INTERVAL_S = 2.0


@dataclass
class Counts:
    """Tasks by where they are: finished well, finished badly, at the endpoint, not yet sent."""

    total: int = 0
    done: int = 0
    failed: int = 0  # failed or cancelled
    running: int = 0  # handed to the endpoint (SUBMITTED), not finished
    pending: int = 0  # accepted, not yet handed over

    @property
    def finished(self) -> int:
        return self.done + self.failed


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressView:
    """Draws Counts as they change; `close()` draws the last state.

    Rate is completions per second since the view opened, ETA the remaining
    tasks at that rate. Used from one thread (the one that calls update).
    """

    def __init__(
        self, description: str, *, file: IO[str] | None = None, plain: bool | None = None
    ) -> None:
        self.description = description
        self.file = file or sys.stderr
        self.started = time.monotonic()
        self._first_finished: int | None = None
        self._last_line = 0.0
        self._printed: Counts | None = None
        self._counts = Counts()
        self._bar: Any = None
        self._task: Any = None
        if not plain:  # None: a bar where one can be drawn; False: a bar even in a pipe
            self._open_bar(force=plain is False)

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def _open_bar(self, force: bool) -> None:
        from rich.console import Console

        console = Console(file=self.file, force_terminal=True if force else None)
        if not (console.is_terminal or console.is_jupyter):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
        )
        self._task = self._bar.add_task(self.description, total=None, detail="")
        self._bar.start()

    def rate(self, counts: Counts) -> float | None:
        """Completions per second since the first update (None before any)."""
        if self._first_finished is None:
            return None
        elapsed = time.monotonic() - self.started
        moved = counts.finished - self._first_finished
        return moved / elapsed if elapsed > 0 and moved > 0 else None

    def line(self, counts: Counts) -> str:
        """The plain-text form of counts: what a pipe or a log file gets."""
        rate = self.rate(counts)
        remaining = counts.total - counts.finished
        eta = remaining / rate if rate else None
        return (
            f"{self.description}: {counts.finished}/{counts.total} finished "
            f"({counts.done} done, {counts.failed} failed, {counts.running} running, "
            f"{counts.pending} pending), {rate or 0:.1f}/s, ETA {_eta(eta)}"
        )

    def update(self, counts: Counts) -> None:
        """Show counts: the bar at once, a plain line if PLAIN_INTERVAL_S passed since the last."""
        if self._first_finished is None:
            self._first_finished = counts.finished
        self._counts = Counts(**vars(counts))
        if self._bar is not None:
            rate = self.rate(counts)
            eta = (counts.total - counts.finished) / rate if rate else None
            detail = (
                f"[green]{counts.done} done[/] [red]{counts.failed} failed[/] "
                f"[yellow]{counts.running} running[/] {counts.pending} pending "
                f"{rate or 0:.1f}/s ETA {_eta(eta)}"
            )
            self._bar.update(
                self._task, total=counts.total, completed=counts.finished, detail=detail
            )
            return
        now = time.monotonic()
        if self._printed != counts and now - self._last_line >= PLAIN_INTERVAL_S:
            self._print(counts, now)

    def _print(self, counts: Counts, now: float) -> None:
        print(self.line(counts), file=self.file, flush=True)
        self._printed, self._last_line = Counts(**vars(counts)), now

    def close(self) -> None:
        """Draw the last counts and let the terminal go."""
        if self._bar is not None:
            self._bar.refresh()
            self._bar.stop()
            self._bar = None
        elif self._printed != self._counts:
            self._print(self._counts, time.monotonic())


# Futures at their endpoint are counted by a pass over all of them: at most this often.
RUNNING_RECOUNT_S = 0.5


def _running(futures: list[concurrent.futures.Future[Any]]) -> int:
    """Unfinished futures whose task reached a Globus endpoint (it named an upstream id)."""
    return sum(1 for f in futures if not f.done() and getattr(f, "upstream_task_id", None))


def as_completed_progress(
    futures: Iterable[concurrent.futures.Future[Any]],
    description: str = "tasks",
    timeout: float | None = None,
    *,
    file: IO[str] | None = None,
) -> Iterator[concurrent.futures.Future[Any]]:
    """concurrent.futures.as_completed, drawing progress as futures finish.

    A failed or cancelled future counts as failed; one whose task reached its
    Globus endpoint as running. Draws to `file` (stderr by default): a bar in
    a terminal or a Jupyter notebook, plain lines otherwise.
    """
    listed = list(futures)
    view = ProgressView(description, file=file)
    counts = Counts(total=len(listed), running=_running(listed))
    counts.pending = counts.total - counts.running
    view.update(counts)
    recounted = time.monotonic()
    try:
        for fut in concurrent.futures.as_completed(listed, timeout=timeout):
            if fut.cancelled() or fut.exception() is not None:
                counts.failed += 1
            else:
                counts.done += 1
            if time.monotonic() - recounted >= RUNNING_RECOUNT_S:  # not once per future
                counts.running, recounted = _running(listed), time.monotonic()
            counts.running = min(counts.running, counts.total - counts.finished)
            counts.pending = counts.total - counts.finished - counts.running
            view.update(counts)
            yield fut
    finally:
        view.close()


def progress(
    futures: Iterable[concurrent.futures.Future[Any]],
    description: str = "tasks",
    timeout: float | None = None,
    *,
    file: IO[str] | None = None,
) -> list[concurrent.futures.Future[Any]]:
    """Wait for every future while drawing progress; the futures, in the order given."""
    listed = list(futures)
    for _ in as_completed_progress(listed, description, timeout, file=file):
        pass
    return listed

"""Plain in-process tallies the daemon keeps for its metrics, with no metrics library.

The metrics endpoint is off by default, and prometheus_client costs the
daemon about 80 ms of start and 1.3 MB when imported; so what the daemon
counts as it works lives here, in plain Python, and gateway/metrics.py
(imported only when the endpoint is on) reads it at scrape time. Each
tally is updated once per commit, per Submit call or per result batch,
never once per task.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

# Seconds one group commit takes (SQLite with synchronous=FULL: 0.25 ms for one
# row, 3.3 ms for 1,000; PostgreSQL over a network: milliseconds more).
COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Writes one commit carries (the writer takes at most 5,000).
COMMIT_WRITES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# Tasks one Submit call carries (a client sends up to 1,024 a call by default;
# the daemon takes at most 100,000).
SUBMIT_TASKS = (1, 2, 5, 10, 50, 100, 250, 500, 1024, 2500, 10000, 100000)


class Histogram:
    """Observations counted in fixed buckets; any thread observes, any thread reads.

    Guarded by its own lock: one observe is a bisect and two additions.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)  # upper bounds, ascending; +Inf is implied
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.bounds) + 1)  # under _lock; the last is past every bound
        self._sum = 0.0  # under _lock

    def observe(self, value: float) -> None:
        """Count one observation."""
        i = bisect_left(self.bounds, value)  # the first bound >= value: Prometheus' "le"
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        """(cumulative count at each bound then at +Inf, sum of observations), one moment's."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for n in counts:
            running += n
            cumulative.append(running)
        return cumulative, total


class Tally:
    """Counts by name (e.g. by upstream) that only grow; any thread adds, any thread reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()  # under _lock

    def add(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

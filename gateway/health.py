"""The daemon's own health loop: WATCHDOG=1 to systemd only while the daemon really works.

A process that is alive but wedged (a store-writer stuck on a locked
database, an event loop blocked by a bug) answers nothing, yet systemd sees
it running. With `WatchdogSec=` systemd restarts a service whose pings stop;
so the pings come from checks of the two things every call depends on,
never from a timer alone:

- the store-writer made progress recently: its current batch (if any) has
  taken less than the watchdog timeout;
- the gRPC event loop answers: a no-op scheduled on it runs within a bound.

The thread "health" owns this loop and the last verdict; it runs only when
systemd set a watchdog (WATCHDOG_USEC) and pings at half its timeout, as
sd_watchdog_enabled(3) advises. Each unhealthy round sends a STATUS= line
naming what failed (shown by `systemctl status` and logged once per change).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from gateway.notify import Notifier

log = logging.getLogger(__name__)

# The most a no-op on the event loop may wait to run, at most this fraction of a round.
LOOP_BOUND_FRACTION = 0.5


class HealthLoop:
    """Pings the watchdog each round in which the writer and the event loop pass their checks."""

    def __init__(
        self,
        notifier: Notifier,
        loop: asyncio.AbstractEventLoop,
        writer_stalled_s: Callable[[], float],
        serving_status: str,
    ) -> None:
        assert notifier.watchdog_s is not None  # built only when systemd set a watchdog
        self._notifier = notifier
        self._loop = loop
        self._writer_stalled_s = writer_stalled_s
        self._serving_status = serving_status
        self._timeout_s = notifier.watchdog_s
        self.interval_s = notifier.watchdog_s / 2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._last_problem = ""  # health thread only

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the pings: called when the drain begins (systemd then waits TimeoutStopSec)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def check(self) -> str:
        """What is wrong, or "" when the daemon is healthy."""
        stalled = self._writer_stalled_s()
        if stalled >= self._timeout_s:
            return f"store writer stalled for {stalled:.1f} s (database locked or disk wedged?)"
        answered = threading.Event()
        try:
            self._loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop is closed: the daemon is stopping
            return "event loop closed"
        bound = self.interval_s * LOOP_BOUND_FRACTION
        if not answered.wait(bound):
            return f"event loop did not answer within {bound:.1f} s"
        return ""

    def _run(self) -> None:
        while not self._stop.is_set():
            problem = self.check()
            if self._stop.is_set():
                return
            if not problem:
                if self._last_problem:
                    log.info("healthy again; watchdog pings resume")
                    self._notifier.send("WATCHDOG=1", f"STATUS={self._serving_status}")
                else:
                    self._notifier.send("WATCHDOG=1")
            else:
                if not self._last_problem:
                    log.error("unhealthy: %s; watchdog pings withheld", problem)
                self._notifier.status(f"unhealthy: {problem}")
            self._last_problem = problem
            self._stop.wait(self.interval_s)

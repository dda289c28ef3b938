"""Rate-limited log lines: a fault that repeats many times a second is logged a few times.

A storage fault of 20 s once wrote over a thousand identical warnings, and a
client repeating a bad request writes one line per call. A line of the same
message (its format string) is written at once the first time, then at most
once per interval, carrying how many like it were held back in between:
"... (repeated 57 times in the last 5.0s)". The count of lines held back after
the last one written shows up with the next occurrence, whenever that is.

`throttled(log).warning(...)` replaces `log.warning(...)` at a call site.
Any thread may log; one lock guards the counters.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

INTERVAL_S = 5.0


class Throttled:
    """One logger's rate-limited methods; each message format is its own key."""

    def __init__(self, logger: logging.Logger, interval_s: float = INTERVAL_S) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        # format string -> (time the last line was written, occurrences held back since)
        self._seen: dict[str, tuple[float, int]] = {}

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        """Log now if this message was not logged in the last interval; else count it."""
        if not self.logger.isEnabledFor(level):
            return
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(msg, (-self.interval_s, 0))
            if now - last < self.interval_s:
                self._seen[msg] = (last, held + 1)
                return
            self._seen[msg] = (now, 0)
        if held:
            msg = f"{msg} (repeated %d times in the last %.1fs)"
            args = (*args, held, now - last)
        self.logger.log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)


_by_logger: dict[str, Throttled] = {}
_by_logger_lock = threading.Lock()


def throttled(logger: logging.Logger) -> Throttled:
    """The rate-limited face of a logger (one per logger, shared by its module)."""
    with _by_logger_lock:
        found = _by_logger.get(logger.name)
        if found is None:
            found = _by_logger[logger.name] = Throttled(logger)
        return found

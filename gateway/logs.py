"""The daemon's log output: one line per event, ids to grep by, text or JSON, no secrets.

Operators grep a task's story by its id and ship logs to journald or a log
store, so:

- a call site names the ids an event is about with ``extra=ids(group=...,
  task=...)`` (gateway/logids.py); the text format appends them as ``group=<id> task=<id>``, the
  JSON format carries them as fields (never parsed back out of prose);
- ``log_format = "json"`` writes one JSON object per line: ts, level,
  logger, message, the ids, and the traceback (exc) when there is one;
- every line passes through a redactor that replaces the configured secrets
  (the Globus token and client secret, the daemon's auth token, the
  password of the database URL, the contents of the token files) with
  ``********``, whatever message they slipped into;
- uncaught exceptions, on any thread, go through the same handler.

Set up once by `configure` on the main thread before any other thread starts.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.config import Settings
from gateway.logids import ID_FIELDS

MASK = "********"
# Shorter strings are not masked: they would blot out ordinary words.
MIN_SECRET_LEN = 4
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the daemon holds, as it could appear in a message."""
    found = [settings.auth_token, settings.globus.token, settings.globus.client_secret]
    for path in (settings.auth_token_file, settings.globus.token_file):
        if path:
            try:
                found.append(Path(path).read_text().strip())
            except (OSError, UnicodeDecodeError):
                pass  # the daemon reports an unreadable file itself
    try:
        password = make_url(settings.resolved_db).password
    except (ArgumentError, ValueError):
        password = None
    if password:
        found.append(str(password))
    return sorted({s for s in found if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)


class _Redacting(logging.Formatter):
    """A formatter whose output never contains one of the given secrets."""

    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        self._secrets = tuple(secrets)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self._format(record))

    def _format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = " ".join(f"{k}={getattr(record, k)}" for k in ID_FIELDS if hasattr(record, k))
        if not tags:
            return line
        head, sep, rest = line.partition("\n")  # ids go on the event's line, before a traceback
        return f"{head} {tags}{sep}{rest}"


class _Json(_Redacting):
    """One JSON object per line: ts, level, logger, message, ids, exc."""

    def _format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        for key in ID_FIELDS:
            if hasattr(record, key):
                doc[key] = str(getattr(record, key))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def formatter(settings: Settings) -> _Redacting:
    """The formatter of the configured log format, redacting the settings' secrets."""
    secrets = secrets_of(settings)
    return _Json(secrets) if settings.log_format == "json" else _Redacting(secrets, TEXT_FORMAT)


def configure(settings: Settings, stream: TextIO = sys.stderr) -> _Redacting:
    """Send the daemon's logs to stream in the configured format; the redactor is returned."""
    chosen = formatter(settings)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(chosen)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # pika narrates every connection step at INFO and logs each refused connect
    # or lost socket at ERROR with a traceback; the result consumer logs one
    # line for each of those itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.captureWarnings(True)  # Python warnings as log lines too, in the same format
    _log_uncaught()
    return chosen


def _log_uncaught() -> None:
    """Uncaught exceptions become log records: formatted, redacted, one JSON line."""
    crash = logging.getLogger("gateway.crash")

    def on_main(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        crash.critical("uncaught exception", exc_info=(kind, exc, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        crash.critical(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = on_main
    threading.excepthook = on_thread

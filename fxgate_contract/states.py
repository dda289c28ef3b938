"""Task states: one enum with the numbers of fxgate.v1.TaskState, for the store, core and client."""

from __future__ import annotations

import enum


class TaskState(enum.IntEnum):
    """The same numbers as fxgate.v1.TaskState in the proto (tests hold them equal)."""

    ACCEPTED = 1
    SUBMITTED = 2
    RUNNING = 3
    SUCCESS = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def finished(self) -> bool:
        """Whether the task has its final state (a result, an error, or cancelled)."""
        return self >= TaskState.SUCCESS


UNFINISHED = (TaskState.ACCEPTED, TaskState.SUBMITTED, TaskState.RUNNING)

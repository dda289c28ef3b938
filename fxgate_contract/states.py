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


class CancelOutcome(enum.IntEnum):
    """What a cancel did to one task: the numbers of fxgate.v1.CancelOutcome in the proto."""

    CANCELLED = 1  # CANCELLED now: withdrawn before it started, or stopped while running
    ALREADY_FINISHED = 2  # it had its final state (CANCELLED too) before the cancel
    RUNNING_CANNOT_STOP = 3  # started (or held by its upstream) and left to run
    UNKNOWN = 4  # the upstream did not say in time

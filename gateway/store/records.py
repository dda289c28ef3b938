"""The domain types the store, the hub and the upstreams exchange.

They live apart from the SQL so that the hub and the upstreams' contract can
name a task or an event without loading SQLAlchemy. Task states come from
``fxgate_contract.states``, shared with the client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from fxgate_contract.states import TaskState


class FunctionRecord(NamedTuple):
    """A registered function as the daemon keeps it: code plus what the SDK registers with it.

    description and meta (the registration metadata's JSON text) go to the
    Globus Compute service with the code; "" when the client sent none.
    """

    name: str
    code: str
    description: str = ""
    meta: str = ""


@dataclass(slots=True)
class NewTask:
    """A task as a client submitted it, before it has an id."""

    function_id: str
    payload: str


class AcceptedIds(list[str]):
    """The task ids of an accepted batch, in submit order.

    `retried`: an earlier Submit with the same submit_id stored them, and its
    tasks went to their upstream then; they must not be handed over again.
    """

    retried = False


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What a task tells its endpoint beside function and payload, as the SDK sends it.

    Each is the JSON text of an object exactly as the client gave it ("" when
    absent): the daemon stores and forwards them, and reads only what its own
    upstream needs (the local one: an MPI task's rank counts). Tasks with equal
    options share one object, and only tasks with equal options share one
    upstream request.
    """

    user_endpoint_config: str = ""
    resource_specification: str = ""
    user_runtime: str = ""  # the submitting process's runtime, as the SDK describes its own


NO_OPTIONS = TaskOptions()


@dataclass(frozen=True, slots=True)
class PendingTask:
    """What an upstream needs to run a task.

    payload None: not held in memory; the upstream reads it from the store
    (Store.payloads) just before it sends the task. payload_size is then its length.
    Slots, and ids shared between the tasks of a batch, because a queue may hold
    millions of these.
    """

    task_id: str
    group_id: str
    endpoint_id: str
    function_id: str
    payload: str | None
    result_serializers: tuple[str, ...]
    state: TaskState = TaskState.ACCEPTED
    upstream_task_id: str | None = None
    payload_size: int = 0
    options: TaskOptions = NO_OPTIONS

    def size(self) -> int:
        """The payload's length, whether or not it is held in memory."""
        return len(self.payload) if self.payload is not None else self.payload_size


@dataclass(slots=True)
class Completion:
    """A finished task as an upstream reports it, by our id or the upstream's."""

    state: TaskState
    data: str
    task_id: str | None = None
    upstream_task_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    exception: str = ""
    completed_at: float | None = None
    # Set, with task_id, by an upstream that knows the task is in state `was` in
    # this group (the Globus upstream's task-id map: SUBMITTED; a cluster endpoint's
    # tasks in flight: ACCEPTED): the store then finishes it without looking it up,
    # on the condition that it is still in that state.
    group_id: str | None = None
    was: TaskState = TaskState.SUBMITTED


@dataclass(slots=True)
class TaskEvent:
    """A committed terminal state of one task, as watchers receive it."""

    task_id: str
    group_id: str
    state: TaskState
    data: str
    error_code: str
    error_message: str
    exception: str
    upstream_task_id: str
    completed_at: float
    seq: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A task group: which upstream and endpoint its tasks go to.

    upstream_group_id is the id the upstream gave the group at its first
    submit (Globus only); None until then.
    """

    id: str
    upstream: str
    endpoint_id: str
    upstream_group_id: str | None
    label: str = ""  # given at the group's first submit; stored only then


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """A task group as `fxgate groups` lists it: where it runs and its tasks counted by state."""

    group: GroupInfo
    created_at: float
    updated_at: float
    counts: dict[TaskState, int]
    # The highest completion seq among its tasks, read with the counts in one statement.
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """A task as `fxgate tasks` lists it: its state and error, without its result."""

    task_id: str
    state: TaskState
    upstream_task_id: str
    created_at: float
    completed_at: float
    error_code: str
    error_message: str

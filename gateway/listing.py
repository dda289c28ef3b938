"""Paged listings of task groups and of a group's tasks, for people finding their work again.

A lost task group id is found here (groups, newest first); a group's tasks
are listed in pages by task id without their results. Pages are keyset
pages: a token names the last row sent, so a page costs the same however
deep into the listing it is, and rows added meanwhile are not sent twice.
Tokens are opaque to callers and checked like any other input.
"""

from __future__ import annotations

import math
import uuid

from fxgate_contract.states import TaskState
from gateway.errors import InvalidRequest, shown
from gateway.store.database import Store
from gateway.store.records import GroupSummary, TaskSummary

DEFAULT_GROUP_PAGE = 100
MAX_GROUP_PAGE = 1000
DEFAULT_TASK_PAGE = 1000
MAX_TASK_PAGE = 10_000
# "<created_at repr>/<uuid>": a float's repr is at most 24 characters.
MAX_TOKEN_CHARS = 80


def _page_size(asked: int, default: int, most: int) -> int:
    if asked > most:
        raise InvalidRequest(f"page_size {asked} is over the limit of {most}")
    return asked or default


def _bad_token(token: str) -> InvalidRequest:
    return InvalidRequest(f"page_token {shown(token)} is not one this daemon gave")


def _uuid_of_token(text: str, token: str) -> str:
    try:
        value = str(uuid.UUID(text))
    except ValueError:
        raise _bad_token(token) from None
    if value != text:  # tokens carry the canonical spelling this module wrote
        raise _bad_token(token)
    return value


def _group_key(token: str) -> tuple[float, str] | None:
    """The (created_at, id) a groups page token names; None for the first page."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count("/") != 1:
        raise _bad_token(token)
    created, gid = token.split("/")
    try:
        when = float(created)
    except ValueError:
        raise _bad_token(token) from None
    if not math.isfinite(when):
        raise _bad_token(token)
    return when, _uuid_of_token(gid, token)


def task_groups(
    store: Store, page_size: int, token: str, only: str = ""
) -> tuple[list[GroupSummary], str]:
    """A page of groups, newest first, and the token of the next page ("" after the last);
    `only`: that group alone (a canonical id the caller found)."""
    size = _page_size(page_size, DEFAULT_GROUP_PAGE, MAX_GROUP_PAGE)
    page = store.group_page(size, _group_key(token), only)
    if len(page) < size:
        return page, ""
    last = page[-1]
    return page, f"{last.created_at!r}/{last.group.id}"


def group_tasks(
    store: Store, group_id: str, state: int, page_size: int, token: str
) -> tuple[list[TaskSummary], str]:
    """A page of a group's tasks by id (state 0: every state), and the next page's token."""
    size = _page_size(page_size, DEFAULT_TASK_PAGE, MAX_TASK_PAGE)
    if state:
        try:
            wanted: TaskState | None = TaskState(state)
        except ValueError:
            raise InvalidRequest(f"state {state} is not a task state") from None
    else:
        wanted = None
    after = _uuid_of_token(token, token) if token else ""
    page = store.task_page(group_id, wanted, after, size)
    return page, (page[-1].task_id if len(page) == size else "")

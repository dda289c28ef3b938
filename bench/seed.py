"""A daemon state of a million finished tasks, written through gateway.store.database.Store.

Going through gRPC and the fake service would take far longer than the
measurement it prepares; the Store is the daemon's own writer, so the rows
are exactly what a daemon would have after running these tasks on the Globus
upstream: groups with upstream ids, tasks accepted, marked submitted with
upstream task ids, then completed with a result (their payload cleared).
Group g holds the results 2 * x for x in [g * per_group, (g + 1) * per_group).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from fxgate_contract.serialize import pack_function, pack_payload, serialize_data
from fxgate_contract.states import TaskState
from gateway.store.database import Store
from gateway.store.records import Completion, FunctionRecord, GroupInfo, NewTask


def double(x: int) -> int:
    return 2 * x


@dataclass(frozen=True)
class Seeded:
    groups: list[str]
    per_group: int
    seconds: float
    db_bytes: int


def seed(state_dir: Path, endpoint_id: str, groups: int, per_group: int) -> Seeded:
    """Write `groups` finished groups of `per_group` tasks into a fresh state dir."""
    state_dir.mkdir(parents=True, exist_ok=True)
    db = state_dir / "gateway.db"
    began = time.monotonic()
    store = Store(f"sqlite:///{db}")
    store.open()
    try:
        function_id = str(uuid.uuid4())
        store.register_function(
            function_id, FunctionRecord("double", pack_function(double))
        ).result()
        payload = pack_payload((0,), {})  # cleared at completion; its size only matters before
        group_ids = []
        for g in range(groups):
            group = GroupInfo(str(uuid.uuid4()), "globus", endpoint_id, str(uuid.uuid4()))
            tasks = [NewTask(function_id, payload)] * per_group
            ids = store.accept(group, tasks, str(uuid.uuid4()), []).result()
            assert group.upstream_group_id is not None
            store.set_upstream_group(group.id, group.upstream_group_id)
            store.mark_submitted({tid: str(uuid.uuid4()) for tid in ids})
            base = g * per_group
            done = [
                Completion(TaskState.SUCCESS, serialize_data(2 * (base + i)), task_id=tid)
                for i, tid in enumerate(ids)
            ]
            store.complete(done).result()
            group_ids.append(group.id)
    finally:
        store.close()
    return Seeded(group_ids, per_group, time.monotonic() - began, db.stat().st_size)

"""How big each scenario is: the issue's sizes ("full") and a tiny smoke-test size.

Kept apart from the scenarios so a reader sees every number the run uses in
one place, and the smoke test runs exactly the same code with other sizes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    stream_tasks: int  # a: results streamed live
    stream_rounds: int  # a: rounds of each system, interleaved; the median is reported
    latency_samples: int  # b: results published one at a time
    latency_gap_s: tuple[float, float]  # b: random pause before each publish
    reattach_tasks: int  # c: finished results re-attached by a new process
    submit_tasks: int  # d: tasks submitted from one client
    stored_tasks: int  # e: tasks seeded into the daemon's store
    group_tasks: int  # e: tasks per seeded group (one group is re-attached)
    scale_clients: int  # e: concurrent client processes, one group each
    scale_client_tasks: int  # e: tasks per client process
    local_tasks: int  # f: trivial tasks through the local upstream
    local_rounds: int  # f: best of this many rounds
    many_procs: int  # g: client processes at once
    many_tasks: int  # g: tasks per client process


SCALES = {
    "full": Scale(
        name="full",
        stream_tasks=20_000,
        stream_rounds=5,
        latency_samples=200,
        latency_gap_s=(0.02, 0.12),
        reattach_tasks=100_000,
        submit_tasks=20_000,
        stored_tasks=1_000_000,
        group_tasks=10_000,
        scale_clients=200,
        scale_client_tasks=50,
        local_tasks=10_000,
        local_rounds=3,
        many_procs=20,
        many_tasks=1_000,
    ),
    "small": Scale(
        name="small",
        stream_tasks=200,
        stream_rounds=1,
        latency_samples=20,
        latency_gap_s=(0.005, 0.03),
        reattach_tasks=1_000,
        submit_tasks=200,
        stored_tasks=1_000,
        group_tasks=100,
        scale_clients=5,
        scale_client_tasks=10,
        local_tasks=200,
        local_rounds=1,
        many_procs=5,
        many_tasks=20,
    ),
}

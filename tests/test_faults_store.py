"""The store's PostgreSQL server restarted while a local-upstream run streams its results.

A fast shutdown ends every session of the daemon at once; the server comes
back on the same data. Results that could not be committed meanwhile must be
committed once it is back (at-least-once execution, never a result twice at
the client), a submit during the outage must be refused as UNAVAILABLE (the
client retries it; nothing half-accepted), and the daemon must keep serving.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from client import Client
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from fxgate_contract.serialize import deserialize
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.faults import (  # noqa: F401
    EventTally,
    assert_daemon_survived,
    assert_stored_once,
    daemons,
    wait_for_log,
)
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401
from tests.support.postgres import PostgresCluster
from tests.support.rabbitmq import RabbitNode
from tests.test_faults_broker import globus_daemon, stream_through

N = 3000


def slow_square(x: int) -> int:
    import time

    time.sleep(0.002)  # the run lasts a few seconds: long enough to restart the server in it
    return x * x


def test_postgres_restarted_mid_run_loses_nothing_and_delivers_each_result_once(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    postgres: PostgresCluster,
) -> None:
    db_url = postgres.new_database()
    daemon = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_DB": db_url})
    daemons.append(daemon)
    daemon.start()
    with Client(address=daemon.address) as c:
        fid = c.register_function(slow_square)
        batch = c.create_batch()
        for i in range(N + 1):
            batch.add(fid, "local", args=(i,))
        late_payload = batch.tasks.pop()[2]  # submitted during the outage
        ids = c.batch_run(batch)
    group = batch.task_group_id
    tally = EventTally(daemon.address, group)
    late = pb.SubmitRequest(
        task_group_id=group,
        endpoint_id="local",
        submit_id=str(uuid.uuid4()),
        tasks=[pb.TaskSpec(function_id=fid, payload=late_payload)],
    )
    try:
        assert tally.wait_for(N // 4, timeout=60)  # results are streaming
        postgres.stop_server()
        try:
            # results go on being produced and fail to commit; a submit is refused
            wait_for_log(daemon, "could not store")
            with grpc.insecure_channel(daemon.address) as channel:
                stub = pb_grpc.GatewayStub(channel)
                with pytest.raises(grpc.RpcError) as refused:
                    stub.Submit(late, timeout=60)
        finally:
            postgres.start_server()
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database" in (refused.value.details() or "")
        assert len(tally.events) < N  # the outage fell inside the run
        with grpc.insecure_channel(daemon.address) as channel:  # the client's retry
            late_id = pb_grpc.GatewayStub(channel).Submit(late, timeout=60).task_ids[0]
        assert tally.wait_for(N + 1, timeout=120), f"{len(tally.events)} of {N + 1}"
    finally:
        tally.close()
    assert tally.duplicates() == {}
    values = {t: deserialize(d) for t, d in tally.data.items()}
    assert values == {tid: i * i for i, tid in enumerate([*ids, late_id])}
    assert_stored_once(db_url, group, tally.data)
    assert_daemon_survived(daemon)


def test_postgres_restarted_mid_globus_stream_every_result_once(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811
    postgres: PostgresCluster,
    fake_globus: FakeGlobus,  # noqa: F811
    rabbit: RabbitNode,  # noqa: F811
) -> None:
    daemon = globus_daemon(tmp_path, fake_globus, daemons, postgres.new_database())

    def restart_store(tally: EventTally) -> None:
        postgres.stop_server()
        try:
            wait_for_log(daemon, "could not commit")  # deliveries it must not drop
        finally:
            postgres.start_server()

    stream_through(daemon, fake_globus, rabbit, restart_store)
    assert_daemon_survived(daemon)

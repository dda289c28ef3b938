"""The SDK's registration and lookup methods, on the local endpoint and through the fake
Globus Compute service (the daemon asks it with its own credentials)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client import Client, Executor, NotOffered, RequestRefused
from client.registration import HARDWARE_REPORT_NAME, HARDWARE_REPORT_SOURCE
from fxgate_contract.serialize import pack_function
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

SOURCE = "def triple(x):\n    return 3 * x\n"


def double(x: int) -> int:
    return x * 2


@pytest.fixture
def gdaemon(tmp_path: Path, fake_globus: FakeGlobus) -> Iterator[DaemonProcess]:  # noqa: F811
    d = DaemonProcess(tmp_path / "state", extra_env=fake_globus.daemon_env())
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


def register_on_service(fake: FakeGlobus) -> str:
    """A function registered with the service directly, as the Globus Compute SDK would."""
    response = requests.post(
        f"{fake.base_url}/v3/functions",
        json={"function_name": "double", "function_code": pack_function(double)},
        headers={"Authorization": f"Bearer {fake.token}"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["function_uuid"])


# ------------------------------------------------------------------ local endpoint


def test_local_endpoint_lookups_answer_in_the_services_shapes(client: Client) -> None:
    local_id = client.status()["local_endpoint_id"]
    status = client.get_endpoint_status("local")
    assert status["status"] == "online"
    assert status["details"]["total_workers"] >= 1
    assert client.get_endpoint_status(local_id)["status"] == "online"
    meta = client.get_endpoint_metadata(local_id)
    assert meta["uuid"] == local_id and meta["name"] == "local" and meta["local"] is True
    assert [e["uuid"] for e in client.get_endpoints()] == [local_id]
    with pytest.raises(RequestRefused, match="NOT_FOUND"):
        client.get_endpoint_status(str(uuid.uuid4()))  # no Globus upstream here


def test_registered_function_and_source_code_run_and_are_described(
    client: Client, executor: Executor
) -> None:
    fid = client.register_function(double)
    record = client.get_function(fid)
    assert record["function_uuid"] == fid and record["function_name"] == "double"
    assert record["function_code"] == pack_function(double)
    sid = client.register_source_code(SOURCE, "triple")
    assert executor.submit_to_registered_function(sid, (4,)).result(timeout=60) == 12
    with pytest.raises(RequestRefused, match="NOT_FOUND"):
        client.get_function(str(uuid.uuid4()))


def test_executor_registration_follows_the_sdk(executor: Executor) -> None:
    fid = executor.register_function(double)
    with pytest.raises(ValueError, match="already registered"):
        executor.register_function(double)
    assert executor.register_function(double, function_id=fid) == fid
    assert executor.submit(double, 21).result(timeout=60) == 42  # sent by the registered id
    sid = executor.register_source_code(SOURCE, "triple")
    with pytest.raises(ValueError, match="already registered"):
        executor.register_source_code(SOURCE, "triple")
    assert executor.submit_to_registered_function(sid, (2,)).result(timeout=60) == 6
    with pytest.raises(NotOffered, match="own Globus credentials"):
        executor.register_function(len, public=True)


def test_hardware_report_runs_on_the_local_endpoint(client: Client, executor: Executor) -> None:
    report = executor.get_worker_hardware_details()
    assert report.startswith("== Compute Endpoint worker ==") and "cpus:" in report
    task_id = client.get_worker_hardware_details("local")  # a task id, as the SDK's
    with Executor(address=client.address) as ex:
        (fut,) = ex.reload_tasks(client.session_task_group_id)
        assert fut.task_id == task_id
        assert "python:" in fut.result(timeout=60)
    namespace: dict[str, object] = {}
    exec(HARDWARE_REPORT_SOURCE, namespace)  # the same source runs in this process too
    assert callable(namespace[HARDWARE_REPORT_NAME])


def test_unregistered_function_id_is_refused_on_the_local_endpoint(executor: Executor) -> None:
    fut = executor.submit_to_registered_function(str(uuid.uuid4()), (1,))
    with pytest.raises(RequestRefused, match="only on a Globus endpoint"):
        fut.result(timeout=60)


def test_not_offered_methods_say_why(client: Client) -> None:
    for call in (
        lambda: client.delete_function(str(uuid.uuid4())),
        lambda: client.get_allowed_functions("local"),
        lambda: client.get_result_amqp_url(),
        lambda: client.stop_endpoint("local"),
    ):
        with pytest.raises(NotOffered, match="is not offered: "):
            call()
    client.version_check()
    client.logout()


def test_client_keywords_choosing_service_or_identity_are_refused_not_dropped() -> None:
    """A script's own login would be silently replaced by the daemon's identity: refused."""
    nowhere = "unix:///nonexistent.sock"
    for keywords in (
        {"app": object()},
        {"authorizer": object()},
        {"environment": "sandbox"},
        {"local_compute_services": True},
    ):
        with pytest.raises(NotOffered, match="is not offered: "):
            Client(address=nowhere, **keywords)
    with pytest.warns(UserWarning, match="'funcx_home' argument is unrecognized"):
        Client(address=nowhere, funcx_home="/tmp").close()
    Client(address=nowhere, do_version_check=False).close()
    with pytest.raises(NotOffered, match="client.Client"):
        Executor(endpoint_id="local", client=object())


def test_executor_given_a_client_uses_its_daemon(daemon: DaemonProcess) -> None:
    with Client(address=daemon.address) as c, Executor(endpoint_id="local", client=c) as ex:
        assert ex.address == daemon.address
        assert ex.submit(pow, 2, 5).result(timeout=60) == 32


# ------------------------------------------------------------------ Globus endpoint


def test_globus_lookups_are_the_services_answers(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    service_fid = register_on_service(fake_globus)
    with Client(address=gdaemon.address) as c:
        status = c.get_endpoint_status(fake_globus.endpoint_id)
        assert status["status"] == "online" and "total_workers" in status["details"]
        meta = c.get_endpoint_metadata(fake_globus.endpoint_id)
        assert meta["uuid"] == fake_globus.endpoint_id and meta["hostname"] == "fake-host"
        listed = [e["uuid"] for e in c.get_endpoints(role="any")]
        assert listed[1:] == [fake_globus.endpoint_id]
        assert c.get_function(service_fid)["function_name"] == "double"
        with pytest.raises(RequestRefused, match="ENDPOINT_NOT_FOUND"):
            c.get_endpoint_status(str(uuid.uuid4()))
    assert fake_globus.requests_by_route["get_endpoints"] == 1


def test_a_function_registered_with_the_service_runs_by_its_globus_id(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    service_fid = register_on_service(fake_globus)
    registrations = fake_globus.requests_by_route["register_function"]
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        fut = ex.submit_to_registered_function(service_fid, (8,))
        assert fut.result(timeout=60) == 16
    assert {a.function_id for a in fake_globus.accepted} == {service_fid}  # passed through
    assert fake_globus.requests_by_route["register_function"] == registrations

"""A function registration reaches the web service as the SDK's does: name, code,
description (by default the docstring) and the registering process's metadata.

The same functions are registered through globus-compute-sdk 4.19.0's own
Client and through fxgate's (a real daemon, whose Globus upstream registers a
function when a task first needs it), both against the fake web service, and
the registration bodies it recorded are compared.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from globus_compute_sdk import Client as SdkClient

from client import Client, Executor
from fxgate_contract.runtime import SDK_VERSION
from tests.daemon import DaemonProcess
from tests.support.fake_globus import FakeGlobus, reset_sdk_executor_state, sdk_client
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

TIMEOUT = 60
SOURCE = "def triple(x):\n    return 3 * x\n"


def documented(x: int) -> int:
    """Doubles x, and says so."""
    return 2 * x


@pytest.fixture
def gdaemon(tmp_path: Path, fake_globus: FakeGlobus) -> Iterator[DaemonProcess]:  # noqa: F811
    """A daemon whose Globus upstream is the fake service."""
    d = DaemonProcess(tmp_path / "state", extra_env=fake_globus.daemon_env())
    d.start()
    yield d
    assert d.stop() in (0, -9), d.log()


@pytest.fixture
def sdk(fake_globus: FakeGlobus) -> Iterator[SdkClient]:  # noqa: F811
    reset_sdk_executor_state()
    yield sdk_client(fake_globus)
    reset_sdk_executor_state()


def _registered(fake: FakeGlobus, start: int) -> list[dict[str, Any]]:
    with fake._cond:
        return list(fake.function_bodies[start:])


def _run_on_globus(address: str, endpoint: str, function_id: str) -> None:
    """A task of the function, so the daemon registers it with the service."""
    with Executor(endpoint_id=endpoint, address=address) as ex:
        assert ex.submit_to_registered_function(function_id, (7,)).result(TIMEOUT) in (14, 21)


def test_registration_bodies_match_the_sdk(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
    sdk: SdkClient,
) -> None:
    endpoint = fake_globus.endpoint_id
    start = len(fake_globus.function_bodies)
    sdk.register_function(documented)
    sdk.register_source_code(SOURCE, "triple", description="times three")
    theirs = _registered(fake_globus, start)

    start = len(fake_globus.function_bodies)
    with Client(address=gdaemon.address) as c:
        fid = c.register_function(documented)
        sid = c.register_source_code(SOURCE, "triple", description="times three")
    _run_on_globus(gdaemon.address, endpoint, fid)
    _run_on_globus(gdaemon.address, endpoint, sid)
    ours = _registered(fake_globus, start)

    assert ours == theirs  # the SDK in this venv runs the same Python and strategy
    assert ours[0]["description"] == "Doubles x, and says so."
    assert ours[0]["meta"] == {
        "python_version": platform.python_version(),
        "sdk_version": SDK_VERSION,
        "serde_identifier": "01",
    }
    assert ours[1]["description"] == "times three"


def test_description_is_part_of_the_function(gdaemon: DaemonProcess) -> None:
    """The same code registered with two descriptions is two functions, each kept whole."""
    with Client(address=gdaemon.address) as c:
        plain = c.register_function(documented)
        again = c.register_function(documented)
        other = c.register_function(documented, description="another text")
        assert plain == again != other
        assert c.get_function(plain)["description"] == "Doubles x, and says so."
        assert c.get_function(other)["description"] == "another text"
        assert c.get_function(other)["metadata"]["python_version"] == platform.python_version()


def test_executor_registers_as_the_sdk_executor(
    gdaemon: DaemonProcess,
    fake_globus: FakeGlobus,  # noqa: F811
) -> None:
    """submit(fn) registers fn with its docstring, as the SDK's Executor does."""
    start = len(fake_globus.function_bodies)
    with Executor(endpoint_id=fake_globus.endpoint_id, address=gdaemon.address) as ex:
        assert ex.submit(documented, 4).result(timeout=TIMEOUT) == 8
        fid = ex.register_function(documented, description="registered by hand")
        assert ex.submit_to_registered_function(fid, (5,)).result(timeout=TIMEOUT) == 10
    bodies = _registered(fake_globus, start)
    assert [b["description"] for b in bodies] == ["Doubles x, and says so.", "registered by hand"]


def test_bad_registration_options_are_refused_as_the_sdk_refuses_them(
    gdaemon: DaemonProcess,
) -> None:
    with Client(address=gdaemon.address) as c:
        with pytest.raises(ValueError, match="metadata"):
            c.register_function(documented, metadata={"python_version": "3.11"})
        with pytest.raises(TypeError, match="sdk_version"):
            c.register_source_code(SOURCE, "triple", metadata={"python_version": "3.11"})
        with pytest.raises(TypeError, match="searchable"):
            c.register_function(documented, searchable=False)
        given = {"python_version": "3.9.1", "sdk_version": "2.0.0"}
        fid = c.register_source_code(SOURCE, "triple", metadata=given)
        assert c.get_function(fid)["metadata"] == given

"""A client talks only to a socket a trusted user put where no one else can write.

A result is unpickled in the client: whoever answers on the socket runs code
as the client's user. These tests plant a real fake daemon as a second local
user and run real clients as root and as that user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from client import Client
from client.errors import DaemonPermissionDenied, UntrustedSocket
from tests.daemon import ROOT, DaemonProcess
from tests.support.other_user import OtherUser, other_user, shared_dir  # noqa: F401

# A fake daemon: accepts connections, counts them and the bytes they send, closes
# them; prints "ready" once listening and "<connections> <bytes>" when stdin closes.
FAKE_SERVER = """
    import os, selectors, socket, sys
    path = sys.argv[1]
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(16)
    print("ready", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    connections = received = 0
    while True:
        ready = [key.fileobj for key, _ in sel.select()]
        if sys.stdin in ready:
            break
        conn, _ = server.accept()
        connections += 1
        conn.settimeout(1)
        try:
            received += len(conn.recv(65536))
        except OSError:
            pass
        conn.close()
    print(connections, received, flush=True)
"""


def plant_fake_daemon(user: OtherUser, path: Path) -> subprocess.Popen[str]:
    fake = user.popen(FAKE_SERVER, str(path))
    assert fake.stdout is not None
    line = fake.stdout.readline()
    assert line == "ready\n", f"fake daemon did not start: {line!r} {fake.communicate()}"
    return fake


def fake_daemon_counts(fake: subprocess.Popen[str]) -> tuple[int, int]:
    """Stop the fake daemon; how many connections it got and how many bytes they sent."""
    out, err = fake.communicate("", timeout=30)
    connections, received = out.split()
    return int(connections), int(received)


@pytest.mark.parametrize("mode", [0o777, 0o1777], ids=["world-writable", "sticky"])
def test_root_client_refuses_a_socket_another_user_planted(
    other_user: OtherUser,  # noqa: F811
    shared_dir: Path,  # noqa: F811
    mode: int,
) -> None:
    state = shared_dir / "state"
    state.mkdir()
    state.chmod(mode)
    sock = state / "gateway.sock"
    fake = plant_fake_daemon(other_user, sock)
    try:
        with pytest.raises(UntrustedSocket) as refused:
            with Client(address=f"unix://{sock}") as c:
                c.status()
    finally:
        connections, received = fake_daemon_counts(fake)
    assert (connections, received) == (0, 0)
    message = str(refused.value)
    assert str(sock) in message or str(state) in message
    assert "FXGATE_DAEMON_USER" in message


def test_daemon_user_setting_trusts_a_service_users_socket(
    other_user: OtherUser,  # noqa: F811
    shared_dir: Path,  # noqa: F811
) -> None:
    """The same kind of socket, owned by the configured service user, is talked to."""
    run = shared_dir / "run"
    run.mkdir(mode=0o755)
    os.chown(run, other_user.uid, other_user.gid)
    sock = run / "gateway.sock"
    fake = plant_fake_daemon(other_user, sock)
    code = f"""
        from client import Client
        from client.errors import GatewayUnavailable
        try:
            with Client(address="unix://{sock}") as c:
                c.status()
        except GatewayUnavailable:
            pass  # the fake does not speak gRPC; what matters is that it was reached
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env.update(PYTHONPATH=str(ROOT), FXGATE_DAEMON_USER=other_user.name)
    try:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        connections, received = fake_daemon_counts(fake)
    assert out.returncode == 0, out.stderr
    assert connections >= 1 and received > 0


@pytest.mark.parametrize("dir_mode", [0o700, 0o755])
def test_a_user_without_permission_on_the_socket_is_told_so(
    other_user: OtherUser,  # noqa: F811
    shared_dir: Path,  # noqa: F811
    dir_mode: int,
) -> None:
    d = DaemonProcess(shared_dir / "state")
    d.state_dir.mkdir(mode=dir_mode)
    d.state_dir.chmod(dir_mode)
    d.start()
    try:
        script = other_user.popen(
            """
            from client import Client
            with Client() as c:
                c.status()
            """,
            env={"FXGATE_ADDRESS": d.address},
        )
        _, err = script.communicate(timeout=60)
        assert script.returncode == 1
        last = err.strip().splitlines()[-1]
        assert last.startswith(
            "fxgate_contract.errors.DaemonPermissionDenied: permission denied on"
        ), err
        assert str(d.socket) in last or str(d.state_dir) in last
        assert "no fxgate daemon answers" not in err
        assert DaemonPermissionDenied.__name__ in err
    finally:
        assert d.stop() == 0, d.log()


def test_a_client_without_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    """The first retry warning names the problem, the daemon's address and `fxgate serve`."""
    code = """
        import logging
        from client import Executor
        logging.basicConfig(level=logging.WARNING)
        ex = Executor(endpoint_id="local")
        ex.submit(print, 1)
        ex.shutdown(wait=True)
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env.update(PYTHONPATH=str(ROOT), FXGATE_ADDRESS=f"unix://{tmp_path}/gateway.sock")
    script = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = threading.Timer(60, script.kill)  # a hung script fails the test, not the run
    deadline.start()
    try:
        assert script.stderr is not None
        warning = ""
        for line in script.stderr:
            if "WARNING" in line:
                warning = line
                break
    finally:
        deadline.cancel()
        script.kill()
        script.wait()
    assert "fxgate serve" in warning, warning
    assert f"{tmp_path}/gateway.sock" in warning
    assert "No such file or directory" in warning, warning  # the daemon's (gRPC's) own words


def test_fxgate_status_refuses_a_planted_socket_and_names_a_closed_one(
    other_user: OtherUser,  # noqa: F811
    shared_dir: Path,  # noqa: F811
) -> None:
    """`fxgate status` applies the client's rule: a planted socket is refused, a closed one
    is a permission error, never "no daemon answers"."""
    planted = shared_dir / "planted"
    planted.mkdir()
    planted.chmod(0o777)
    fake = plant_fake_daemon(other_user, planted / "gateway.sock.status")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env.update(PYTHONPATH=str(ROOT), FXGATE_ADDRESS=f"unix://{planted}/gateway.sock")
    try:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        connections, _ = fake_daemon_counts(fake)
    assert out.returncode == 1
    assert connections == 0
    assert "not talking to the fxgate socket" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr

    d = DaemonProcess(shared_dir / "state")
    d.start()
    try:
        status = other_user.popen(
            "import sys; from gateway.cli import main; sys.exit(main(['status']))",
            env={"FXGATE_ADDRESS": d.address},
        )
        _, err = status.communicate(timeout=60)
        assert status.returncode == 1
        assert "permission denied on" in err, err
        assert "no fxgate daemon answers" not in err
        assert "Traceback" not in err
    finally:
        assert d.stop() == 0, d.log()

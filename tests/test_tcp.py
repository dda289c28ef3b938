"""A daemon served over TCP: TLS and a bearer token, or no start at all.

Real `fxgate serve` processes on a real localhost port, a self-signed
certificate made for the test, real gRPC over TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client import Client, Executor
from client.connection import Connection
from client.errors import FxgateError, GatewayUnavailable, RequestRefused
from fxgate_contract._proto import gateway_pb2 as pb
from fxgate_contract._proto import gateway_pb2_grpc as pb_grpc
from tests.daemon import ROOT, DaemonProcess
from tests.support.rabbitmq import free_ports

TOKEN = "t0ken-for-the-tcp-tests-0123456789"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def tcp_daemon(
    tmp_path: Path, tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[DaemonProcess]:
    """A daemon on 127.0.0.1:<free port> with TLS and a token; this process trusts it."""
    cert, key = tls
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    d = DaemonProcess(
        tmp_path / "state",
        tcp_address=f"127.0.0.1:{free_ports(1)[0]}",
        extra_env={
            "FXGATE_TLS_CERT_FILE": str(cert),
            "FXGATE_TLS_KEY_FILE": str(key),
            "FXGATE_AUTH_TOKEN_FILE": str(token_file),
        },
    )
    d.start()
    monkeypatch.setenv("FXGATE_TLS_CA_FILE", str(cert))
    monkeypatch.setenv("FXGATE_AUTH_TOKEN", TOKEN)
    yield d
    assert d.stop() == 0, d.log()


def square(x: int) -> int:
    return x * x


def test_tasks_run_and_reattach_over_tls_with_the_token(tcp_daemon: DaemonProcess) -> None:
    with Executor(endpoint_id="local", address=tcp_daemon.address) as ex:
        futures = [ex.submit(square, i) for i in range(20)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(20)]
        group = ex.task_group_id
    with Executor(endpoint_id="local", address=tcp_daemon.address, task_group_id=group) as again:
        values = sorted(f.result(timeout=60) for f in again.reload_tasks(group))
    assert values == [i * i for i in range(20)]
    assert f"fxgate serving on {tcp_daemon.address}" in tcp_daemon.log()


def test_status_command_over_tcp(tcp_daemon: DaemonProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--json"],
        env=tcp_daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert '"local_endpoint_id"' in out.stdout


@pytest.mark.parametrize("token", ["", "wrong-token-of-a-sufficient-length"])
def test_a_call_without_the_token_is_refused_and_changes_nothing(
    tcp_daemon: DaemonProcess, tls: tuple[Path, Path], token: str
) -> None:
    trust = grpc.ssl_channel_credentials(root_certificates=tls[0].read_bytes())
    credentials = (
        grpc.composite_channel_credentials(trust, grpc.access_token_call_credentials(token))
        if token
        else trust
    )
    with grpc.secure_channel(tcp_daemon.address, credentials) as channel:
        stub = pb_grpc.GatewayStub(channel)  # type: ignore[no-untyped-call]
        for call in (
            lambda: stub.Status(pb.StatusRequest(), timeout=30),
            lambda: stub.Submit(pb.SubmitRequest(endpoint_id="local"), timeout=30),
            lambda: list(stub.Watch(pb.WatchRequest(task_group_id="x"), timeout=30)),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "FXGATE_AUTH_TOKEN" in (err.value.details() or "")
    with Client(address=tcp_daemon.address) as c:  # the right token: nothing was accepted
        assert c.status()["task_groups"] == 0


def test_wrong_token_in_the_client_library_is_a_clear_refusal(
    tcp_daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FXGATE_AUTH_TOKEN", "not-the-daemons-token-at-all")
    with Client(address=tcp_daemon.address) as c, pytest.raises(RequestRefused) as err:
        c.status()
    assert err.value.code == "UNAUTHENTICATED"


def _await(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Until the daemon shows the change: it re-reads the token file on calls, once a second."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_rotated_token_file_takes_over_without_a_restart(
    tcp_daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    def accepted(token: str) -> bool:
        monkeypatch.setenv("FXGATE_AUTH_TOKEN", token)
        with Client(address=tcp_daemon.address) as c:
            try:
                c.status()
            except RequestRefused as exc:
                assert exc.code == "UNAUTHENTICATED"
                return False
            return True

    token_file = Path(tcp_daemon.extra_env["FXGATE_AUTH_TOKEN_FILE"])
    rotated = "rotated-token-0123456789abcdef"
    assert accepted(TOKEN) and not accepted(rotated)
    token_file.write_text(rotated + "\n")
    _await(lambda: not accepted(TOKEN), "the old token is still accepted")
    assert accepted(rotated)
    assert "auth token re-read" in tcp_daemon.log()
    # A botched rotation (a token too short) keeps the last good one in force.
    token_file.write_text("short\n")
    _await(
        lambda: accepted(rotated) and "auth token file unusable" in tcp_daemon.log(),
        "the unusable token file was not noticed",
    )
    assert not accepted("short")


def test_client_that_does_not_trust_the_certificate_cannot_connect(
    tcp_daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FXGATE_TLS_CA_FILE")  # the system's roots do not know it
    with Client(address=tcp_daemon.address) as c, pytest.raises(GatewayUnavailable):
        c.status()


def test_client_without_a_token_fails_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FXGATE_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("FXGATE_AUTH_TOKEN_FILE", raising=False)
    with pytest.raises(FxgateError, match="FXGATE_AUTH_TOKEN or FXGATE_AUTH_TOKEN_FILE"):
        Connection("127.0.0.1:1")


@pytest.mark.parametrize(
    ("with_tls", "settings", "message"),
    [
        (False, {}, "set 'tls_cert_file' and 'tls_key_file'"),
        (True, {}, "set 'auth_token' or 'auth_token_file'"),
        (True, {"FXGATE_AUTH_TOKEN": "short"}, "at least 16 characters"),
        (
            True,
            {"FXGATE_AUTH_TOKEN_FILE": "/nonexistent/token"},
            "'auth_token_file': cannot read /nonexistent/token",
        ),
        (
            False,
            {"FXGATE_TLS_CERT_FILE": "/nonexistent/cert.pem", "FXGATE_TLS_KEY_FILE": "/x"},
            "'tls_cert_file': cannot read /nonexistent/cert.pem",
        ),
    ],
)
def test_tcp_without_tls_and_a_token_refuses_to_start(
    tmp_path: Path,
    tls: tuple[Path, Path],
    with_tls: bool,
    settings: dict[str, str],
    message: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env |= settings | {"FXGATE_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    if with_tls:
        env |= {"FXGATE_TLS_CERT_FILE": str(tls[0]), "FXGATE_TLS_KEY_FILE": str(tls[1])}
    address = f"127.0.0.1:{free_ports(1)[0]}"
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--address", address],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert f"address {address} is TCP" in out.stderr or "cannot read" in out.stderr

"""A real `fxgate serve` process for tests: started, waited for, stopped or SIGKILLed.

Readiness is awaited as an event (the gRPC channel becoming ready), never a
sleep. Every daemon gets its own state dir, so tests never share state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from fxgate_contract.credentials import tcp_credentials

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class DaemonProcess:
    state_dir: Path
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # host:port to serve over TCP instead of the state dir's socket; extra_env then
    # names the certificate, key and token files, which its clients are given too.
    tcp_address: str = ""
    # a socket outside the state dir, served with --address
    unix_socket: Path | None = None
    cwd: Path = ROOT  # the daemon's working directory

    @property
    def socket(self) -> Path:
        return self.unix_socket or self.state_dir / "gateway.sock"

    @property
    def address(self) -> str:
        return self.tcp_address or f"unix://{self.socket}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"daemon-{self.starts}.log"

    @property
    def env(self) -> dict[str, str]:
        """The environment a client process needs to find this daemon."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
        env.update(FXGATE_ADDRESS=self.address, PYTHONPATH=str(ROOT))
        if self.tcp_address:  # trust the daemon's own (self-signed) certificate, use its token
            env.update(
                FXGATE_TLS_CA_FILE=self.extra_env["FXGATE_TLS_CERT_FILE"],
                FXGATE_AUTH_TOKEN_FILE=self.extra_env["FXGATE_AUTH_TOKEN_FILE"],
            )
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to serve."""
        self.starts += 1
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = self.env | self.extra_env | {"FXGATE_STATE_DIR": str(self.state_dir)}
        env.pop("FXGATE_ADDRESS")
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--local-workers", str(self.workers)]
        if self.tcp_address:
            cmd += ["--address", self.tcp_address]
        elif self.unix_socket is not None:
            cmd += ["--address", self.address]
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
        )
        log.close()
        return self.proc

    def start(self, timeout: float = 60) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        if self.tcp_address:
            channel = grpc.secure_channel(self.address, tcp_credentials(self.address, self.env))
        else:
            channel = grpc.insecure_channel(self.address)
        with channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=timeout)
            except grpc.FutureTimeoutError:
                raise AssertionError(f"daemon did not serve:\n{self.log()}") from None

    def log(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.state_dir.glob("daemon-*.log"))
        )

    def kill(self) -> None:
        """SIGKILL: the crash the durability promises are about."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def run_script(
        self, code: str, *args: str, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run a client script in its own process against this daemon."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )

    def popen_script(self, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

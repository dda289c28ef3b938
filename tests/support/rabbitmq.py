"""A private, throwaway RabbitMQ node per test session, with fault injection.

Tests must exercise the real broker (reconnects, redelivery, durability), but
must never touch the system node nor depend on it running. Every `RabbitNode`
therefore gets its own node name, its own free ports (AMQP, Erlang
distribution and a private epmd), its own data dir and its own Erlang cookie,
so several nodes (e.g. pytest-xdist workers) coexist on one machine.

The node is started from the distribution's inner scripts
(/usr/lib/rabbitmq/bin on Debian), not from the /usr/sbin wrapper: the wrapper
would `su` to the rabbitmq user and reset HOME (and with it the cookie). When
run as root the server and rabbitmqctl are started as the `rabbitmq` user,
which owns the data dir (with a root-owned dir the node silently never starts).
Readiness is the event `rabbitmqctl wait <pidfile>`, never a sleep.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.run_as import RunAs

DEBIAN_SBIN = Path("/usr/lib/rabbitmq/bin")
# rabbitmqctl's own distribution listener uses these ports; never hand them out.
_CLI_DIST_PORTS = range(35672, 35683)
_LOCALHOST = "127.0.0.1"


class RabbitUnavailable(RuntimeError):
    """rabbitmq-server (or Erlang) is not installed on this machine."""


class RabbitCtlError(RuntimeError):
    """A rabbitmqctl command failed; the message carries its output."""


def find_rabbitmq_sbin() -> Path:
    """Return the dir holding the real rabbitmq-server/rabbitmqctl scripts.

    Raises RabbitUnavailable with an install hint, so a missing broker is a
    clear setup error instead of a timeout deep inside a fixture.
    """
    candidates = []
    if env_dir := os.environ.get("FXTEST_RABBITMQ_SBIN"):
        candidates.append(Path(env_dir))
    candidates.append(DEBIAN_SBIN)
    if found := shutil.which("rabbitmq-server"):
        candidates.append(Path(found).resolve().parent)
    for cand in candidates:
        # The real scripts sit next to rabbitmq-env; the Debian wrapper does not.
        if (cand / "rabbitmq-server").exists() and (cand / "rabbitmq-env").exists():
            if shutil.which("erl") is None:
                raise RabbitUnavailable("rabbitmq-server found but Erlang `erl` is not on PATH")
            return cand
    raise RabbitUnavailable(
        "rabbitmq-server is not installed (looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Install it with `apt-get install -y rabbitmq-server` (Debian/Ubuntu) "
        "or set FXTEST_RABBITMQ_SBIN to the dir holding rabbitmq-server and rabbitmq-env."
    )


def free_ports(count: int) -> list[int]:
    """Pick `count` distinct free TCP ports on loopback, chosen by the kernel.

    The sockets stay bound until all are picked so the ports are distinct;
    ports of rabbitmqctl's fixed CLI range are skipped.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((_LOCALHOST, 0))
            held.append(s)
            port = s.getsockname()[1]
            if port not in _CLI_DIST_PORTS:
                ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


class RabbitNode:
    """One private rabbitmq-server node: start/stop, AMQP URL, fault injection.

    Attributes: `nodename` (unique, `fxtest-<hex>@localhost`), `port` (AMQP),
    `url` (amqp://guest:guest@127.0.0.1:PORT/%2F), `dist_port`, `epmd_port`,
    `data_dir`, `last_start_seconds` (wall time of the latest start until the
    node answered). The data dir survives stop()/kill()/start(), so durable
    queues and persistent messages survive full restarts; close() removes it.
    """

    def __init__(self, *, name_prefix: str = "fxtest", start_timeout: float = 90.0) -> None:
        self.sbin = find_rabbitmq_sbin()
        self.nodename = f"{name_prefix}-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.start_timeout = start_timeout
        self.data_dir = Path(tempfile.mkdtemp(prefix="fxtest-rabbit-"))
        self.last_start_seconds: float | None = None
        self._run_as = RunAs.service_user("rabbitmq")  # none: Erlang runs as root
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._prepare_data_dir()

    # ----------------------------------------------------------------- config

    @property
    def url(self) -> str:
        """AMQP URL of this node (guest is allowed on loopback)."""
        return f"amqp://guest:guest@{_LOCALHOST}:{self.port}/%2F"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "pid"

    def _prepare_data_dir(self) -> None:
        (self.data_dir / "enabled_plugins").write_text("[].\n")
        cookie = self.data_dir / ".erlang.cookie"
        # A private cookie written up front: server and CLI never race to create one.
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self._run_as.chown_tree(self.data_dir)

    def _env(self) -> dict[str, str]:
        d = str(self.data_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=d,  # the Erlang cookie lives here, for server and CLI alike
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS=_LOCALHOST,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS=_LOCALHOST,
            RABBITMQ_MNESIA_BASE=f"{d}/mnesia",
            RABBITMQ_LOG_BASE=f"{d}/log",
            RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins",
            RABBITMQ_PID_FILE=str(self.pid_file),
            # Never pick up the machine's /etc/rabbitmq configuration.
            RABBITMQ_CONF_ENV_FILE=f"{d}/rabbitmq-env.conf",
            RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq",
            RABBITMQ_ADVANCED_CONFIG_FILE=f"{d}/advanced.config",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    # -------------------------------------------------------------- lifecycle

    def is_running(self) -> bool:
        """True while the server process (started by us) is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the node (fresh or after stop()/kill()) and wait until it answers."""
        if self._closed:
            raise RuntimeError("RabbitNode is closed")
        if self.is_running():
            return
        self.pid_file.unlink(missing_ok=True)  # a stale pid would fool `wait`
        began = time.monotonic()
        with open(self.data_dir / "server.out", "ab") as out:
            self._proc = subprocess.Popen(
                [str(self.sbin / "rabbitmq-server")],
                env=self._env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._run_as.process_kwargs,
            )
        try:
            self.ctl("wait", str(self.pid_file), "--timeout", str(int(self.start_timeout)))
        except RabbitCtlError as exc:
            diagnostics = self.diagnostics()
            self.kill()
            raise RabbitCtlError(f"{exc}\n--- node output ---\n{diagnostics}") from None
        self.last_start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the node gracefully (data kept); falls back to kill() on failure."""
        if not self.is_running():
            self._reap()
            return
        try:
            self.ctl("stop", str(self.pid_file), timeout=60)
            assert self._proc is not None
            self._proc.wait(timeout=30)
        except (RabbitCtlError, subprocess.TimeoutExpired):
            self.kill()
        self._reap()

    def kill(self) -> None:
        """Hard crash: SIGKILL the Erlang VM (beam), as a power cut would."""
        beam_pid = self._beam_pid()
        if beam_pid is not None:
            _signal(beam_pid, signal.SIGKILL)
        if self._proc is not None:
            # beam, its port helpers and the sh wrapper share our session's group
            _signal_group(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)
        self._reap()

    def ensure_running(self) -> None:
        """Undo a test's faults: start the VM if it is down, the app if it is stopped."""
        if not self.is_running():
            self.start()
        elif self.ctl("eval", "rabbit:is_running().").strip() != "true":
            self.start_app()

    def close(self) -> None:
        """Stop the node, its private epmd and delete its data; idempotent."""
        if self._closed:
            return
        self.stop()
        self._kill_epmd()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> RabbitNode:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---------------------------------------------------------- fault controls

    def stop_app(self) -> None:
        """Stop the RabbitMQ application, keeping the Erlang VM (broker restart, part 1)."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the RabbitMQ application again; returns once it accepts connections."""
        self.ctl("start_app")
        self.ctl("await_startup")

    def close_all_connections(self, reason: str = "fault injection by test") -> None:
        """Make the broker close every client connection (clients see a forced close)."""
        self.ctl("close_all_connections", reason)

    def set_memory_alarm(self, on: bool) -> None:
        """Raise (or clear) the memory alarm: while raised the broker blocks publishers."""
        self.ctl("set_vm_memory_high_watermark", "0.0000001" if on else "0.4")

    def connection_states(self) -> list[str]:
        """The broker's state of each client connection (running, blocking, blocked, ...)."""
        out = self.ctl("list_connections", "--formatter", "json", "state")
        return sorted(str(r["state"]) for r in json.loads(out or "[]"))

    def restart_hard(self) -> None:
        """SIGKILL the Erlang VM, then start the node again on the same data."""
        self.kill()
        self.start()

    def list_queues(self) -> dict[str, tuple[int, int]]:
        """Map queue name -> (messages_ready, messages_unacknowledged)."""
        out = self.ctl(
            "list_queues",
            "--formatter",
            "json",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        )
        rows = json.loads(out or "[]")
        return {
            r["name"]: (int(r["messages_ready"] or 0), int(r["messages_unacknowledged"] or 0))
            for r in rows
        }

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """Run `rabbitmqctl -q -n NODE ARGS...` as the broker's user; return stdout."""
        try:
            proc = subprocess.run(
                [str(self.sbin / "rabbitmqctl"), "-q", "-n", self.nodename, *args],
                env=self._env(),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                **self._run_as.process_kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise RabbitCtlError(
                f"rabbitmqctl {' '.join(args)} timed out after {timeout}s"
            ) from exc
        if proc.returncode != 0:
            raise RabbitCtlError(
                f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def diagnostics(self, max_chars: int = 4000) -> str:
        """Tail of the server's console output and log file, for error messages."""
        parts = []
        for path in [self.data_dir / "server.out", *sorted((self.data_dir / "log").glob("*.log"))]:
            if path.exists():
                parts.append(f"[{path.name}]\n{path.read_text(errors='replace')[-max_chars:]}")
        return "\n".join(parts) or "(no output)"

    # ---------------------------------------------------------------- helpers

    def _beam_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _kill_epmd(self) -> None:
        epmd = shutil.which("epmd")
        if epmd is None:
            return
        subprocess.run(
            [epmd, "-port", str(self.epmd_port), "-kill"],
            env=self._env(),
            capture_output=True,
            timeout=30,
            check=False,
            **self._run_as.process_kwargs,
        )

    def __repr__(self) -> str:
        return f"RabbitNode({self.nodename}, port={self.port}, running={self.is_running()})"


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass

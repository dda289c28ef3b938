"""Settings precedence and refusal, stub freshness, and the client's light footprint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load
from gateway.errors import ConfigError
from tests.daemon import ROOT


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'local_workers = 3\nlog_level = "DEBUG"\n[globus]\nbatch_size = 50\n'
    )
    env = {"FXGATE_STATE_DIR": str(tmp_path), "FXGATE_LOCAL_WORKERS": "5"}
    s = load(env=env, flags={"log_level": "WARNING"})
    assert s.local_workers == 5  # env beats file
    assert s.log_level == "WARNING"  # flag beats file
    assert s.globus.batch_size == 50  # file beats default
    assert s.resolved_address == f"unix://{tmp_path}/gateway.sock"
    assert s.resolved_db == f"sqlite:///{tmp_path}/gateway.db"
    env["FXGATE_GLOBUS_BATCH_SIZE"] = "70"
    assert load(env=env).globus.batch_size == 70


def test_daemon_and_its_clients_can_share_one_environment(tmp_path: Path) -> None:
    """The client-only TLS variable is not an unknown daemon setting; the token is shared."""
    env = {
        "FXGATE_STATE_DIR": str(tmp_path),
        "FXGATE_ADDRESS": "127.0.0.1:50051",
        "FXGATE_AUTH_TOKEN": "a-shared-token-0123456789",
        "FXGATE_TLS_CA_FILE": "/etc/fxgate/cert.pem",
    }
    s = load(env=env)
    assert s.auth_token == "a-shared-token-0123456789"
    assert s.socket_path is None and s.resolved_address == "127.0.0.1:50051"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("bogus = 1\n", {}, "unknown setting 'bogus'"),
        ('local_workers = "many"\n', {}, "'local_workers' must be of type int"),
        ("[globus]\nnope = 1\n", {}, "unknown setting 'globus.nope'"),
        ("", {"FXGATE_NO_SUCH": "1"}, "unknown environment setting FXGATE_NO_SUCH"),
        ("", {"FXGATE_LOCAL_WORKERS": "0"}, "at least 1"),
        ("", {"FXGATE_MAX_CALLS": "0"}, "'max_calls' must be at least 1"),
        ("grpc_threads = 64\n", {}, "'grpc_threads' is now 'max_calls'"),
        ("", {"FXGATE_GRPC_THREADS": "64"}, "'grpc_threads' is now 'max_calls'"),
        ("local_workers = [", {}, "config file"),
    ],
)
def test_bad_settings_are_refused_by_name(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(env={"FXGATE_STATE_DIR": str(tmp_path), **env})


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_an_unreadable_config_file_is_refused_without_traceback(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.toml"
    if kind == "directory":
        config.mkdir()
    else:
        config.write_bytes(b"\xff\xfe\x00 not text")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"fxgate: cannot read config file {config}"), out.stderr
    assert "Traceback" not in out.stderr


def test_serve_refuses_bad_config_with_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("bogus = 1\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2
    assert "unknown setting 'bogus'" in out.stderr


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), str(tmp_path)], check=True
    )
    for name in ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py"):
        fresh = (tmp_path / name).read_text()
        committed = (ROOT / "fxgate_contract" / "_proto" / name).read_text()
        assert fresh == committed, (
            f"fxgate_contract/_proto/{name} is stale: run python tools/gen_proto.py"
        )


def test_status_command_without_daemon_says_so(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "status",
            "--address",
            f"unix://{tmp_path}/none.sock",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 1
    assert "no fxgate daemon answers" in out.stderr

"""Every example of examples/ run as a script, in its own process, against a real daemon.

The examples are the funcX guide's snippets with only their imports, endpoint
id and defects changed (examples/README.md), so these tests check that a
funcX script moves over to fxgate as promised, output and all.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import DaemonProcess
from tests.support.fixtures import fake_globus, rabbit  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

GUIDE_EXAMPLES = {
    "funcxexecutor_basic_example.py",
    "funcxexecutor_collatz.py",
    "funcxexecutor_status.py",
    "funcxexecutor_handle_result_exceptions.py",
    "funcxexecutor_results_as_arrived.py",
    "funcxexecutor_reload_tasks.py",
    "funcxclient_submit_batch.py",
    "funcxexecutor_reload_batch.py",
}


@pytest.fixture(params=["local", "globus"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon serving the examples' endpoint: its local pool, or a Globus endpoint.

    For "globus" the endpoint is one of the fake web service, whose results
    come back over a real RabbitMQ; the examples then differ from the guide
    in the endpoint id only.
    """
    extra: dict[str, str] = {}
    endpoint = "local"
    if request.param == "globus":
        fake = request.getfixturevalue("fake_globus")
        extra = {"FXGATE_GLOBUS_BASE_URL": fake.base_url, "FXGATE_GLOBUS_TOKEN": fake.token}
        endpoint = fake.endpoint_id
    d = DaemonProcess(tmp_path / "state", extra_env=extra)
    d.start()
    ENDPOINTS[d.address] = endpoint
    yield d
    assert d.stop() == 0, d.log()


ENDPOINTS: dict[str, str] = {}


def example_path(daemon: DaemonProcess, name: str) -> str:
    """examples/<name>, or for a Globus endpoint a copy with that endpoint id."""
    endpoint = ENDPOINTS[daemon.address]
    if endpoint == "local":
        return f"examples/{name}"
    text = (EXAMPLES / name).read_text()
    patched = re.sub(r'^(\w+ = )"local"', rf'\1"{endpoint}"', text, flags=re.M)
    assert patched != text or '"local"' not in text, name
    copy = daemon.state_dir.parent / "examples" / name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(patched)
    return str(copy)


def run_example(
    daemon: DaemonProcess,
    name: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run examples/<name> as `python examples/<name> args...`, as a user would."""
    return subprocess.run(
        [sys.executable, example_path(daemon, name), *args],
        # Unbuffered, so a script that dies by SIGKILL still has its output in the pipe.
        env=daemon.env | {"PYTHONUNBUFFERED": "1"} | (env or {}),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def lines_of(
    proc: subprocess.CompletedProcess[str], daemon: DaemonProcess, rc: int = 0
) -> list[str]:
    """The stdout lines of a run that exited with rc and wrote nothing to stderr."""
    report = f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
    assert proc.returncode == rc, report + f"daemon log:\n{daemon.log()}"
    assert proc.stderr == "", report
    return proc.stdout.splitlines()


def collatz(n: int) -> list[int]:
    seq = [n]
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        seq.append(n)
    return seq


def test_every_guide_example_has_a_file_with_a_docstring() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == GUIDE_EXAMPLES
    for name in GUIDE_EXAMPLES:
        tree = ast.parse((EXAMPLES / name).read_text())
        assert ast.get_docstring(tree), f"{name} has no docstring"
        assert name in (EXAMPLES / "README.md").read_text()


def test_basic_example(daemon: DaemonProcess) -> None:
    proc = run_example(daemon, "funcxexecutor_basic_example.py")
    assert lines_of(proc, daemon) == ["14"]


def test_collatz(daemon: DaemonProcess) -> None:
    out = lines_of(run_example(daemon, "funcxexecutor_collatz.py"), daemon)
    assert out[:2] == [
        "Tasks all submitted; waiting for results",
        "All sequences generated (from 1 to 100)",
    ]
    sequences = [ast.literal_eval(line) for line in out[2:]]
    assert len(sequences) == 100
    assert sequences[0] == [1]
    assert all(seq[-1] == 1 for seq in sequences)
    # Submission order, and the very sequences: no "disproof candidates" line either.
    assert sequences == [collatz(n) for n in range(1, 101)]


def test_status(daemon: DaemonProcess) -> None:
    # done() is asked right after submit(), in the thread holding the GIL; the
    # result needs two RPCs and a worker run first, so it cannot be there yet.
    # The script still exits 0: leaving the `with` waited for the task.
    proc = run_example(daemon, "funcxexecutor_status.py")
    assert lines_of(proc, daemon) == ["Status:  False"]


def test_handle_result_exceptions(daemon: DaemonProcess) -> None:
    proc = run_example(daemon, "funcxexecutor_handle_result_exceptions.py")
    out = [line for line in lines_of(proc, daemon) if line.strip()]
    # As with the SDK, the exception's text is the remote traceback, indented.
    assert out[0].rstrip() == "Oh no!  The task raised an exception:"
    assert out[1].strip().startswith("Traceback (most recent call last):")
    assert "in generate_collatz_sequence" in "\n".join(out)
    assert out[-1].strip() == "ValueError: Sequence not terminated in 100 steps"


def test_results_as_arrived(daemon: DaemonProcess) -> None:
    # Ten sleeps of up to 10..19 s on the fixture's two workers: about 40 s.
    proc = run_example(daemon, "funcxexecutor_results_as_arrived.py", timeout=240)
    out = lines_of(proc, daemon)
    assert out[0] == "Results: " + str([f"{i} -> {i * 2}" for i in range(10)])
    received = out[1:]
    assert len(received) == 10
    # In the order they finished, which is any order: compare as sets.
    assert sorted(received) == [f"Received: {i} -> {i * 2}" for i in range(10, 20)]


def test_reload_tasks_after_sigkill(daemon: DaemonProcess) -> None:
    first = run_example(daemon, "funcxexecutor_reload_tasks.py")
    script = example_path(daemon, "funcxexecutor_reload_tasks.py")
    out = lines_of(first, daemon, rc=-9)  # it SIGKILLs itself
    match = re.fullmatch(
        "New session; creating funcX tasks; if this script dies, rehydrate"
        f" futures with this Task Group ID: ({UUID})",
        out[0],
    )
    assert match, out
    group_id = match[1]
    # Zero or more progress lines (the guide polls once a second), the last saying 5.
    progress = [line for line in out[1:] if line.startswith("Tasks submitted upstream: ")]
    assert progress == out[1 : 1 + len(progress)]
    assert not progress or progress[-1] == "Tasks submitted upstream: 5"
    assert out[1 + len(progress) :] == [
        "Simulating unexpected process death!  Now reload the session",
        "by rerunning this script with the task_group_id:",
        "",
        f"  {sys.executable} {script} {group_id}",
        "",
    ]

    second = run_example(daemon, "funcxexecutor_reload_tasks.py", group_id)
    assert lines_of(second, daemon) == [
        f"Reloading tasks from Task Group ID: {group_id}",
        "Results:",
        *(f"  your funcx logic result, from task: {n}" for n in range(1, 6)),
    ]


def test_submit_batch_then_reload_batch(daemon: DaemonProcess) -> None:
    # The submitting script reads EXPENSIVE_TASK_SECONDS (the function carries
    # it to the worker): 0 instead of the guide's 24 hours.
    submit = run_example(daemon, "funcxclient_submit_batch.py", env={"EXPENSIVE_TASK_SECONDS": "0"})
    out = lines_of(submit, daemon)
    assert len(out) == 1, out
    match = re.fullmatch(f"Task Group ID for later reloading: ({UUID})", out[0])
    assert match, out
    group_id = match[1]

    reload = run_example(daemon, "funcxexecutor_reload_batch.py", group_id)
    assert lines_of(reload, daemon) == ["Received: All done!"] * 10


def test_the_readme_main_job_runs_to_the_end(tmp_path: Path) -> None:
    """`bash scripts/demo`, as the README's quickstart gives it, on a fresh state dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXGATE_", "XDG_"))}
    env["HOME"] = str(tmp_path)  # the embedded default state dir lands under it
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "\n14\n" in done.stdout  # the basic example's result
    status = done.stdout.split("== fxgate status\n", 1)[1]
    for line in ("task groups: 3", "tasks success: 101", "tasks failed: 1"):
        assert line in status, status  # 1 + 100 collatz results; 1 deliberate failure
    assert not (tmp_path / ".local/state/fxgate/gateway.sock").exists()  # daemon stopped

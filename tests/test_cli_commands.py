"""`fxgate groups/tasks/result/watch/cancel/release/gc` as a person runs them: real processes.

Each command runs as its own process against a real daemon; --json output is
parsed and checked, and human output is checked for what a person looks
for. `fxgate watch` runs in a real terminal (a private tmux server) and in a
pipe. Tasks that must stay unfinished for a while wait for a file the test
creates, so the test decides when they finish.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import ROOT, DaemonProcess

# Runs tasks; prints {"group", "tasks"}. argv: the label (Executor(label=...)).
FINISHED_GROUP = """
import json, sys
from client import Executor

def square(x):
    return x * x

def boom(x):
    raise ValueError(f"no good: {x}")

with Executor(endpoint_id="local", label=sys.argv[1]) as ex:
    futures = [ex.submit(square, 3), ex.submit(square, 4), ex.submit(boom, 5)]
    for f in futures:
        f.exception()
    print(json.dumps({"group": ex.task_group_id, "tasks": [f.task_id for f in futures]}))
"""

# Submits tasks that finish once a file exists; prints {"group", "tasks"} at once.
# argv: the file, then a JSON list of numbers (a negative one fails).
WAITING_GROUP = """
import json, sys
from client import Client

def wait_then_square(path, x):
    import os, time
    while not os.path.exists(path):
        time.sleep(0.02)
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * x

with Client() as c:
    fid = c.register_function(wait_then_square)
    batch = c.create_batch()
    for x in json.loads(sys.argv[2]):
        batch.add(fid, args=(sys.argv[1], x))
    run = c.batch_run("local", batch)
    print(json.dumps({"group": run["task_group_id"], "tasks": run["tasks"][fid]}))
"""

# The first lines of a traceback: what a person must never see for a mistake.
TRACEBACK = "Traceback (most recent call last)"


def fxgate(
    daemon: DaemonProcess, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def as_json(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def script(daemon: DaemonProcess, code: str, *args: str) -> dict[str, Any]:
    out = daemon.run_script(code, *args)
    assert out.returncode == 0, out.stderr
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def one_line_error(run: subprocess.CompletedProcess[str], code: int) -> str:
    """A mistake: exit `code`, one line on stderr starting "fxgate:", no traceback."""
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert TRACEBACK not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fxgate: "), run.stderr
    return lines[0]


@pytest.fixture
def finished(daemon: DaemonProcess) -> dict[str, Any]:
    """A group of three finished tasks: 9, 16 and a ValueError; labelled "squares"."""
    return script(daemon, FINISHED_GROUP, "squares")


def test_groups_lists_newest_first_with_label_and_counts(
    daemon: DaemonProcess, finished: dict[str, Any]
) -> None:
    later = script(daemon, FINISHED_GROUP, "later")
    groups = as_json(fxgate(daemon, "groups", "--json"))
    assert [g["task_group_id"] for g in groups] == [later["group"], finished["group"]]
    g = groups[1]
    assert g["label"] == "squares" and g["upstream"] == "local"
    assert g["tasks"]["success"] == 2 and g["tasks"]["failed"] == 1 and g["total"] == 3
    assert g["created_at"] <= g["updated_at"]
    assert [
        x["task_group_id"] for x in as_json(fxgate(daemon, "groups", "--json", "--limit", "1"))
    ] == [later["group"]]
    table = fxgate(daemon, "groups")
    assert table.returncode == 0, table.stderr
    head, *rows = table.stdout.splitlines()
    assert head.split()[:4] == ["GROUP", "LABEL", "ENDPOINT", "AGE"]
    assert rows[1].split()[:3] == [finished["group"], "squares", "local"]
    assert rows[1].split()[-5:] == ["2", "1", "0", "0", "3"]  # done failed running pending total


def test_tasks_of_a_group_by_state(daemon: DaemonProcess, finished: dict[str, Any]) -> None:
    group, ids = finished["group"], finished["tasks"]
    every = as_json(fxgate(daemon, "tasks", group, "--json"))
    assert sorted(t["task_id"] for t in every) == sorted(ids)
    failed = as_json(fxgate(daemon, "tasks", group, "--state", "failed", "--json"))
    assert [t["task_id"] for t in failed] == [ids[2]]
    assert failed[0]["status"] == "failed" and failed[0]["completed_at"]
    table = fxgate(daemon, "tasks", group, "--state", "success")
    assert table.returncode == 0
    assert sorted(line.split()[0] for line in table.stdout.splitlines()[1:]) == sorted(ids[:2])
    line = one_line_error(fxgate(daemon, "tasks", group, "--state", "bogus"), 2)
    assert "unknown state 'bogus'" in line and "success" in line


def test_result_of_a_success_and_of_a_failure(
    daemon: DaemonProcess, finished: dict[str, Any]
) -> None:
    ok, _, bad = finished["tasks"]
    value = fxgate(daemon, "result", ok)
    assert (value.returncode, value.stdout) == (0, "9\n")
    assert as_json(fxgate(daemon, "result", ok, "--json")) == {
        "task_id": ok,
        "status": "success",
        "result": 9,
    }
    failure = fxgate(daemon, "result", bad)
    assert failure.returncode == 1
    assert "ValueError" in failure.stderr and "no good: 5" in failure.stderr
    as_doc = fxgate(daemon, "result", bad, "--json")
    assert as_doc.returncode == 1
    doc = json.loads(as_doc.stdout)
    assert doc["status"] == "failed" and "no good: 5" in doc["exception"]


def test_unknown_ids_and_bad_ids_are_one_line_and_exit_2(daemon: DaemonProcess) -> None:
    unknown = str(uuid.uuid4())
    for args in (
        ("result", unknown),
        ("tasks", unknown),
        ("watch", unknown),
        ("release", unknown),
        ("cancel", unknown),
        ("result", "not-an-id"),
    ):
        line = one_line_error(fxgate(daemon, *args), 2)
        assert "unknown" in line or "not a UUID" in line, line


def test_bad_arguments_are_refused_by_the_parser(daemon: DaemonProcess) -> None:
    for args in (
        ("tasks",),
        ("cancel",),
        ("cancel", "a", "--group", "b"),
        ("groups", "--limit", "x"),
    ):
        run = fxgate(daemon, *args)
        assert run.returncode == 2 and "usage: fxgate" in run.stderr, args
        assert TRACEBACK not in run.stderr


def test_no_daemon_is_one_line_and_exit_1(tmp_path: Path) -> None:
    state = tmp_path / "none"
    state.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    for command in ("groups", "gc"):
        run = subprocess.run(
            [sys.executable, "-m", "gateway.cli", command, "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        line = one_line_error(run, 1)
        assert "no fxgate daemon answers" in line and str(state) in line


def test_help_is_written_for_a_person() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert top.returncode == 0
    assert "argument parsing" not in top.stdout  # no internal docstring
    assert "fxgate watch GROUP" in top.stdout and "Exit codes" in top.stdout
    for command in ("groups", "tasks", "result", "watch", "cancel", "release", "gc"):
        sub = subprocess.run(
            [sys.executable, "-m", "gateway.cli", command, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert sub.returncode == 0 and f"example:\n  fxgate {command}" in sub.stdout


def test_watch_piped_prints_plain_lines_and_exits_1_on_a_failure(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    group = script(daemon, WAITING_GROUP, str(go), "[2, 3, -1]")["group"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "watch", group],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert watch.stdout is not None
    first = watch.stdout.readline()  # drawn before anything finished
    assert f"{group}: 0/3 finished" in first, first
    go.touch()
    out, err = watch.communicate(timeout=120)
    assert watch.returncode == 1, err
    assert "\x1b[" not in first + out  # no terminal control codes in a pipe
    last = out.strip().splitlines()[-1]
    assert "3/3 finished (2 done, 1 failed, 0 running, 0 pending)" in last, out
    assert err.strip() == f"fxgate: task group {group}: 1 of 3 tasks failed"
    # A finished group: one line, at once; --json gives the counts as data
    again = fxgate(daemon, "watch", group, "--json")
    assert again.returncode == 1
    doc = json.loads(again.stdout.strip().splitlines()[-1])
    assert (doc["done"], doc["failed"], doc["total"]) == (2, 1, 3)


def test_watch_carries_on_across_a_daemon_restart(daemon: DaemonProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    group = script(daemon, WAITING_GROUP, str(go), "[2, 3]")["group"]
    watch = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "watch", group, "--json"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert watch.stdout is not None
    first = json.loads(watch.stdout.readline())  # watching: both waiting or running
    assert (first["running"] + first["pending"], first["done"]) == (2, 0)
    assert daemon.stop() == 0
    daemon.start()  # the unfinished tasks run again
    go.touch()
    out, err = watch.communicate(timeout=180)
    assert watch.returncode == 0, err
    last = json.loads(out.strip().splitlines()[-1])
    assert (last["done"], last["failed"], last["total"]) == (2, 0, 2)
    assert err.count("reconnecting") == 1, err  # said once, however long the daemon was away


class Tmux:
    """A private tmux server (its own socket name): sessions it starts, text on its screens."""

    def __init__(self, env: dict[str, str]) -> None:
        self.name = f"fxgate-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def run(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "t", "-x", "220", "-y", "12", command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """Poll the screen until it shows text: a terminal has no event to await."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"the screen never showed {text!r}:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux(daemon: DaemonProcess) -> Iterator[Tmux]:
    t = Tmux(daemon.env | {"TERM": "xterm-256color"})
    yield t
    t.kill()


def test_watch_in_a_terminal_draws_a_bar_and_exits_0(
    daemon: DaemonProcess, tmux: Tmux, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    group = script(daemon, WAITING_GROUP, str(go), "[2, 3]")["group"]
    watch = shlex.join([sys.executable, "-m", "gateway.cli", "watch", group])
    tmux.start(f"cd {shlex.quote(str(ROOT))} && {watch}; echo EXIT=$?; sleep 600")
    before = tmux.wait_for("0/2")
    assert "━" in before and "0 done" in before, before
    waiting = re.search(r"(\d+) running (\d+) pending", before)  # started or not yet
    assert waiting and int(waiting[1]) + int(waiting[2]) == 2, before
    go.touch()
    after = tmux.wait_for("EXIT=")
    assert "EXIT=0" in after, after
    assert "2/2" in after and "2 done" in after and "0 failed" in after, after


def test_cancel_a_group_then_release_it(daemon: DaemonProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    # two workers: two tasks start and wait, the other four stay queued
    started = script(daemon, WAITING_GROUP, str(go), "[1, 2, 3, 4, 5, 6]")
    group = started["group"]
    report = as_json(fxgate(daemon, "cancel", "--group", group, "--json"))
    cancelled = report["cancelled"]
    assert len(cancelled) >= 1 and set(cancelled) <= set(started["tasks"])
    assert {report["outcomes"][t] for t in cancelled} == {"cancelled"}
    go.touch()
    watched = fxgate(daemon, "watch", group, "--plain")
    assert watched.returncode == 1  # cancelled tasks did not succeed
    states = as_json(fxgate(daemon, "tasks", group, "--state", "cancelled", "--json"))
    assert sorted(t["task_id"] for t in states) == sorted(cancelled)
    one = fxgate(daemon, "cancel", started["tasks"][0])  # finished: not cancelled
    assert one.returncode == 0 and f"{started['tasks'][0]}: not cancelled" in one.stdout
    released = as_json(fxgate(daemon, "release", group, "--json"))
    assert released["tasks_released"] == 6
    one_line_error(fxgate(daemon, "tasks", group), 2)
    assert group not in fxgate(daemon, "groups").stdout


def test_release_with_cancel_cancels_what_has_not_started(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    group = script(daemon, WAITING_GROUP, str(go), "[1, 2, 3, 4]")["group"]
    done = fxgate(daemon, "release", group, "--cancel")
    assert done.returncode == 0, done.stderr
    assert f"released task group {group}: 4 tasks" in done.stdout
    assert "cancelled" in done.stdout
    go.touch()


@pytest.fixture
def expiring(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon that keeps finished groups for no time at all (retention_days = 0)."""
    d = DaemonProcess(tmp_path / "state", extra_env={"FXGATE_RETENTION_DAYS": "0"})
    d.start()
    yield d
    assert d.stop() == 0, d.log()


def test_gc_dry_run_then_real(expiring: DaemonProcess, tmp_path: Path) -> None:
    done = script(expiring, FINISHED_GROUP, "old")["group"]
    go = tmp_path / "go"
    open_group = script(expiring, WAITING_GROUP, str(go), "[1]")["group"]
    dry = as_json(fxgate(expiring, "gc", "--dry-run", "--json"))
    assert dry["dry_run"] and dry["task_group_ids"] == [done] and dry["tasks_released"] == 3
    listed = {g["task_group_id"] for g in as_json(fxgate(expiring, "groups", "--json"))}
    assert listed == {done, open_group}  # a dry run releases nothing
    real = fxgate(expiring, "gc")
    assert real.returncode == 0
    assert "released 1 finished task groups" in real.stdout and done in real.stdout
    listed = {g["task_group_id"] for g in as_json(fxgate(expiring, "groups", "--json"))}
    assert listed == {open_group}  # unfinished: kept
    go.touch()

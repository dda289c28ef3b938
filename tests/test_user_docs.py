"""The scientist's and the contributor's pages work as written: each marked block runs here.

docs/scientist.md walks a new user from activating the environment to
cancelling; docs/contributing.md gives the checks a contributor runs. Blocks
marked `sh test=NAME` run in bash (`-euo pipefail`) with the checkout's
.venv activated, in order, in one directory that also holds the page's
`python file=NAME` blocks; `fxgate serve` runs in the background for the
blocks after it. A marked block without a test here, or a test whose block
is gone, fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from client import Client
from tests.daemon import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
SH = re.compile(r"^```sh test=(\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE = re.compile(r"^```python file=(\S+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SCIENTIST = ["activate", "serve", "submit", "see", "reattach", "cancel"]
CONTRIBUTOR = ["checks", "bench"]
VENV = Path(sys.executable).parent.parent  # the environment these tests run in: ".venv"


def _blocks(page: str) -> tuple[dict[str, str], dict[str, str]]:
    text = (ROOT / "docs" / page).read_text()
    return dict(SH.findall(text)), dict(FILE.findall(text))


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    return env | {"FXGATE_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}


def _activate(cwd: Path) -> str:
    """The page says `. .venv/bin/activate` in the checkout: here that is this Python's venv."""
    if cwd != ROOT:
        (cwd / ".venv").symlink_to(VENV)
    return ""


def _run(block: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f". {VENV}/bin/activate\n{block}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{block}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_every_marked_block_is_run() -> None:
    assert list(_blocks("scientist.md")[0]) == SCIENTIST
    assert list(_blocks("contributing.md")[0]) == CONTRIBUTOR


def test_the_scientist_page(tmp_path: Path) -> None:
    blocks, files = _blocks("scientist.md")
    work = tmp_path / "work"
    work.mkdir()
    _activate(work)
    for name, text in files.items():
        (work / name).write_text(text)
    env = _env(tmp_path / "state")
    assert "fxgate" in _run(blocks["activate"], work, env)
    serve = subprocess.Popen(
        ["bash", "-c", f". {VENV}/bin/activate\nexec {blocks['serve'].strip()}"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    probe = DaemonProcess(tmp_path / "state")  # only to wait until `fxgate serve` answers
    probe.proc = serve  # type: ignore[assignment]
    try:
        probe.wait_ready()
        assert _run(blocks["submit"], work, env).strip().endswith("2470")
        seen = _run(blocks["see"], work, env)
        assert "squares" in seen and "20/20 finished (20 done" in seen
        assert int(seen.splitlines()[-1]) in {i * i for i in range(20)}  # fxgate result
        assert _run(blocks["reattach"], work, env).split() == ["20", "361"]
        cancelled = _run(blocks["cancel"], work, env)
        assert "cancelled" in cancelled
        with Client(address=probe.address) as c:
            assert c.list_task_groups() == []  # both released
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err


def test_the_contributor_page(tmp_path: Path) -> None:
    blocks, _ = _blocks("contributing.md")
    env = _env(tmp_path / "state")
    _run(blocks["checks"], ROOT, env)
    out = _run(blocks["bench"], ROOT, env)
    assert "sandbox left empty" in out

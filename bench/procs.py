"""Helper processes of a run (publisher, raw consumer, client scripts) and their memory.

Every process the benchmark starts goes through `Procs`, which kills what is
still running when the run ends, so no publisher or client outlives it, even
on an error. `RssSampler` sums the resident memory of a set of processes
(optionally with their children, e.g. a daemon's local workers) every 0.1 s and
keeps the peak of that sum: memory "of all processes at once", as the issue asks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a helper: no FXGATE_* of ours, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FXGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    return env | dict(extra or {})


class Procs:
    """Starts `python -m bench.<module>` helpers, logs their stderr, kills leftovers."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._started: list[tuple[str, subprocess.Popen[str]]] = []
        self._count = 0

    def spawn(
        self,
        name: str,
        module: str,
        args: list[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> subprocess.Popen[str]:
        self._count += 1
        log = self.log_path(name)
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=dict(env) if env is not None else base_env(),
                cwd=ROOT,
                stdin=stdin,
                stdout=stdout,
                stderr=err,
                text=True,
            )
        self._started.append((name, proc))
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def finish(self, name: str, proc: subprocess.Popen[str], timeout: float) -> None:
        """Wait for a helper; a non-zero exit or a timeout is an error naming its log."""
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"{name} did not finish in {timeout} s:\n{self.tail(name)}"
            ) from None
        if code != 0:
            raise RuntimeError(f"{name} exited with {code}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def close(self) -> None:
        """Kill every helper still running (an interrupted run leaves none behind)."""
        for _, proc in self._started:
            if proc.poll() is None:
                proc.kill()
        for _, proc in self._started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self._started.clear()


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def rss_mb(pid: int, *, children: bool = False) -> float:
    """Resident memory of a process (and optionally its children) in MiB."""
    try:
        proc = psutil.Process(pid)
        total = float(proc.memory_info().rss)
        if children:
            total += sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0.0
    return total / MB


def cpu_s(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) a running process used so far."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = float(times.user + times.system)
        if children:
            for child in proc.children(recursive=True):
                t = child.cpu_times()
                total += t.user + t.system
    except psutil.Error:
        return 0.0
    return total


class ForeignCpu:
    """CPU seconds that other work on the machine used meanwhile (not this run's processes).

    On a small shared machine another session's test run can halve a result;
    this says when. It sees processes alive at start or end (not ones that
    came and went between) and skips kernel threads.
    """

    def __init__(self) -> None:
        self.began = time.time()
        self._start = self._snapshot()

    @staticmethod
    def _ours() -> set[int]:
        me = psutil.Process()
        return {me.pid} | {p.pid for p in me.children(recursive=True)}

    def _snapshot(self) -> dict[int, float]:
        ours = self._ours()
        out = {}
        for p in psutil.process_iter(["pid", "ppid", "cpu_times"]):
            pid, ppid, times = p.info["pid"], p.info["ppid"], p.info["cpu_times"]
            if pid in ours or pid == 2 or ppid == 2 or times is None:
                continue
            out[pid] = times.user + times.system
        return out

    def seconds(self) -> float:
        now = self._snapshot()
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in now.items())


class RssSampler:
    """Peaks of the summed RSS (and PSS) of watched processes, sampled every `interval` s.

    Each process is watched under a label ("daemon", "clients"); the peak of the
    total and of each label's sum are kept. PSS splits pages shared between
    processes (libraries, copy-on-write) among them, so its sum is not inflated
    by sharing the way a sum of RSS is.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._watched: dict[int, tuple[str, bool]] = {}  # pid -> (label, with children)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self.peak_pss_mb = 0.0
        self.peak_by_label: dict[str, float] = {}
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch(self, pid: int, *, label: str = "clients", children: bool = False) -> None:
        with self._lock:
            self._watched[pid] = (label, children)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.peak_mb

    def _sample(self) -> None:
        with self._lock:
            watched = dict(self._watched)
        rss: dict[str, float] = {}
        pss = 0.0
        for pid, (label, kids) in watched.items():
            try:
                procs = [psutil.Process(pid)]
                if kids:
                    procs += procs[0].children(recursive=True)
                for p in procs:
                    info = p.memory_full_info()
                    rss[label] = rss.get(label, 0.0) + info.rss / MB
                    pss += info.pss / MB
            except psutil.Error:
                continue  # it exited between two samples
        self.peak_mb = max(self.peak_mb, sum(rss.values()))
        self.peak_pss_mb = max(self.peak_pss_mb, pss)
        for label, mb in rss.items():
            self.peak_by_label[label] = max(self.peak_by_label.get(label, 0.0), mb)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self._sample()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

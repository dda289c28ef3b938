"""ShellFunction, MPIFunction and ShellResult as globus-compute-sdk 4.19.0 defines them.

Why fxgate has its own: a client or a local worker without the SDK (which drags in
globus-sdk, pika and pydantic) can still build, run and load these objects. They behave
as the SDK's do (same constructor, attributes, result fields, return codes, output
files and snippets) and they pickle as the SDK's classes, by the SDK's module path
(``globus_compute_sdk.sdk.shell_function`` / ``.mpi_function``): a real endpoint, which
has the SDK and not fxgate, loads them as its own. Loading them where the SDK is absent
needs ``fxgate_contract.sdk_shim``. Standard library only (no dill at import time).
"""

from __future__ import annotations

import copyreg
import importlib
import keyword
import os
import subprocess
import tempfile
import uuid
from typing import IO, Any

SHELL_MODULE = "globus_compute_sdk.sdk.shell_function"
MPI_MODULE = "globus_compute_sdk.sdk.mpi_function"


class _SdkModule:
    """Pickles as ``importlib.import_module(name)``: resolved where the object is loaded."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (self.name,)


class _SdkClass:
    """Pickles as ``getattr(<module>, name)``: the loading side's class, not this one."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[_SdkModule, str]]:
        return getattr, (_SdkModule(self.module), self.name)


def _reduce_as(obj: object, module: str) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    # copyreg._reconstructor(cls, object, None) is object.__new__(cls), as protocol 0
    # pickles do; then the state (the instance's __dict__, the same keys the SDK's
    # instances carry) is set as pickle sets any object's.
    cls = _SdkClass(module, type(obj).__name__)
    return copyreg._reconstructor, (cls, object, None), dict(vars(obj))  # type: ignore[attr-defined]


class ShellResult:
    """What a ShellFunction run produced: the command, output snippets, its return code."""

    def __init__(
        self,
        cmd: str,
        stdout: str,
        stderr: str,
        returncode: int,
        exception_name: str | None = None,
    ) -> None:
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode
        self.exception_name = exception_name

    def __reduce__(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        return _reduce_as(self, SHELL_MODULE)

    def __str__(self) -> str:
        msg = f"exit code: {self.returncode}\n   stdout:\n{_tail(self.stdout, 'stdout')}"
        if self.returncode != 0:
            msg += f"\n\n   stderr:\n{_tail(self.stderr, 'stderr')}"
            if self.exception_name:
                msg += f"\n\nexception: {self.exception_name}"
        return msg

    def __repr__(self) -> str:
        parts = [f"returncode={self.returncode!r}", f"cmd={self.cmd!r}"]
        if self.exception_name is not None:
            parts.append(f"exception_name={self.exception_name!r}")
        parts.extend((f"stdout={self.stdout!r}", f"stderr={self.stderr!r}"))
        return f"{type(self).__name__}({', '.join(parts)})"


def _tail(text: str, name: str) -> str:
    # the SDK's ShellResult.__str__: the last 10 lines of the last 1 KiB
    whole = text.lstrip("\n").rstrip()
    shown = "\n".join(whole[-1024:].splitlines()[-10:])
    if shown != whole:
        shown = f"[... truncated; see .{name} for full output ...]\n{shown}"
    return shown


class ShellFunction:
    """A command line run with bash on the endpoint; calling it returns a ShellResult.

    ``cmd`` is formatted with the call's keyword arguments. Output goes to the given
    files, or to two files in the task's sandbox; the last ``snippet_lines`` lines of
    each come back. A non-zero exit is a result (``returncode``, ``exception_name``),
    not an exception; ``walltime`` seconds exceeded give return code 124.
    """

    def __init__(
        self,
        cmd: str,
        stdout: str | None = None,
        stderr: str | None = None,
        walltime: float | None = None,
        snippet_lines: int = 1000,
        name: str | None = None,
        return_dict: bool = False,
    ) -> None:
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.walltime = walltime
        if walltime:
            assert walltime >= 0, f"Negative walltime={walltime} is not allowed"
        self.snippet_lines = snippet_lines
        name = name or type(self).__name__
        assert isinstance(name, str)
        self.__name__ = self.valid_function_name(name)
        self.return_dict = return_dict

    def __reduce__(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        return _reduce_as(self, SHELL_MODULE)

    def __str__(self) -> str:
        parts = []
        if self.walltime is not None:
            parts.append(f" wall time: {self.walltime}")
        if self.stdout is not None:
            parts.append(f"    stdout: {self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"    stderr: {self.stderr!r}")
        parts.append(f"     lines: {self.snippet_lines!r}")
        header = "   command: "
        whole = self.cmd.strip()
        cmd = "\n".join(whole[:1024].splitlines()[:10])
        if cmd != whole:
            cmd += "\n[... truncated; see .cmd for full script ...]"
        if "\n" in cmd:
            indent = "\n" + len(header) * " "
            cmd = cmd.strip().replace("\n", indent)
            cmd = f"-----{indent}{cmd}{indent}-----"
        parts.append(f"{header}{cmd}")
        return f"{self.__name__}\n" + "\n".join(parts)

    def __repr__(self) -> str:
        parts = []
        if self.__name__ != type(self).__name__:
            parts.append(f"name={self.__name__!r}")
        if self.walltime is not None:
            parts.append(f"walltime={self.walltime!r}")
        if self.stdout is not None:
            parts.append(f"stdout={self.stdout!r}")
        if self.stderr is not None:
            parts.append(f"stderr={self.stderr!r}")
        parts.append(f"snippet_lines={self.snippet_lines}")
        parts.append(f"cmd={self.cmd!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def valid_function_name(self, v: str) -> str:
        """The name a function is registered under must be a Python identifier."""
        if not (v.isidentifier() and not keyword.iskeyword(v)):
            raise ValueError("Function name must be valid python name")
        return v

    def open_std_fd(self, fname: str | None, mode: str = "a+") -> IO[str] | None:
        """Open an output file for appending, making its directory first."""
        if fname is None:
            return None
        if os.path.dirname(fname):
            os.makedirs(os.path.dirname(fname), exist_ok=True)
        return open(fname, mode)  # noqa: SIM115 - closed by get_and_close_streams

    def get_snippet(self, file_obj: IO[str]) -> str:
        """The last snippet_lines lines of an output file."""
        file_obj.seek(0, 0)
        return "".join(file_obj.readlines()[-self.snippet_lines :])

    def get_and_close_streams(self, stdout: IO[str], stderr: IO[str]) -> tuple[str, str]:
        """Both snippets; the files are closed afterwards."""
        snippets = self.get_snippet(stdout), self.get_snippet(stderr)
        stdout.close()
        stderr.close()
        return snippets

    def execute_cmd_line(self, cmd: str) -> ShellResult | dict[str, Any]:
        """Run a formatted command line in the sandbox (GC_TASK_SANDBOX_DIR) as the SDK does."""
        run_dir = os.environ.get("GC_TASK_SANDBOX_DIR")
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            os.chdir(run_dir)
        prefix = os.environ.get("GC_TASK_UUID", str(uuid.uuid4())[-10:]) + "."
        std_out = self.open_std_fd(self.stdout or _fresh_name(prefix, ".stdout"))
        std_err = self.open_std_fd(self.stderr or _fresh_name(prefix, ".stderr"))
        assert std_out is not None and std_err is not None
        if not run_dir:
            print(_NO_SANDBOX, file=std_err)
        try:
            returncode, exception_name = self._run(cmd, std_out, std_err)
        finally:
            stdout_snippet, stderr_snippet = self.get_and_close_streams(std_out, std_err)
        result = {
            "cmd": cmd,
            "stdout": stdout_snippet,
            "stderr": stderr_snippet,
            "returncode": returncode,
            "exception_name": exception_name,
        }
        return result if self.return_dict else ShellResult(**result)  # type: ignore[arg-type]

    def _run(self, cmd: str, std_out: IO[str], std_err: IO[str]) -> tuple[int, str | None]:
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=std_out,
                stderr=std_err,
                shell=True,
                executable="/bin/bash",
                close_fds=False,
            )
            proc.wait(timeout=self.walltime)
        except subprocess.TimeoutExpired:
            return 124, "subprocess.TimeoutExpired"  # as the timeout(1) command
        if proc.returncode != 0:
            return proc.returncode, "subprocess.CalledProcessError"
        return 0, None

    def __call__(self, **kwargs: Any) -> ShellResult | dict[str, Any]:
        """Format cmd with the keyword arguments and run it."""
        return self.execute_cmd_line(self.cmd.format(**kwargs))


_NO_SANDBOX = (
    "WARNING: Task sandboxing will not work due to endpoint misconfiguration. "
    "Please enable sandboxing on the remote endpoint. "
)


def _fresh_name(prefix: str, suffix: str) -> str:
    # The SDK takes the name of a NamedTemporaryFile (which is then deleted) in the cwd.
    with tempfile.NamedTemporaryFile(dir=os.getcwd(), prefix=prefix, suffix=suffix) as f:
        return f.name


class MPIFunction(ShellFunction):
    """A ShellFunction whose command runs under the MPI launcher in ``$PARSL_MPI_PREFIX``.

    The endpoint (or fxgate's local worker) sets that variable from the task's
    resource_specification (num_ranks, or num_nodes and ranks_per_node).
    """

    def __reduce__(self) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        return _reduce_as(self, MPI_MODULE)

    def __call__(self, **kwargs: Any) -> ShellResult | dict[str, Any]:
        """Format cmd, prefix it with the launcher and run it."""
        return self.execute_cmd_line("$PARSL_MPI_PREFIX " + self.cmd.format(**kwargs))

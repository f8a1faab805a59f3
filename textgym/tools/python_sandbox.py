"""Sandboxed Python: an agent's code runs in a locked-down child process with hard limits.

Each call starts a fresh interpreter (``python -s -P -S -B -u``, ``PYTHONHASHSEED=0``: no user
site or script folder, standard library only, no ``.pyc`` writes, unbuffered, set iteration
order fixed) in a new session, in a fresh temporary working folder that
is deleted afterwards, with a minimal environment (no inherited variables, so no secrets). The
child program, :mod:`textgym.tools.sandbox_runner`, applies its limits and isolation *before*
the code runs; the parent here enforces the wall-clock limit (it kills the whole process group),
caps the output it keeps, and turns every way the code can fail into a ``ToolResult`` with
``ok=False`` and a short reason ("timed out after 2 s", "memory limit (256 MB)", "blocked:
network access", ...). The parent never raises because of what the code did.

What is and is not guaranteed is in ``docs/tools.md``; :meth:`PythonSandbox.isolation` reports
which kernel layers took effect on this machine.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from textgym.tools.base import ToolResult, check_limit, format_call

RUNNER = Path(__file__).with_name("sandbox_runner.py")
OUTPUT_STOP_FACTOR = 64  # the code is stopped once it has written this many times what is kept


class PythonSandbox:
    """The ``python`` tool: run code in a sandboxed subprocess and return what it printed.

    The value of a last expression is printed like in a REPL, so ``<python>sum([1, 2])</python>``
    gives ``3``. An uncaught exception gives its traceback and ``ok=False``.

    Args:
        timeout: wall-clock seconds per call (start-up included); the process group is killed
            after it.
        cpu_seconds: CPU-time limit (whole seconds, ``RLIMIT_CPU``); default ``ceil(timeout)``.
        memory_mb: address-space limit (``RLIMIT_AS``) in MiB.
        max_output_chars: characters of output (stdout and stderr, interleaved) kept in the
            result; the code is stopped once it writes far more.
        max_file_mb: largest file the code may write (``RLIMIT_FSIZE``), in MiB.
        max_code_chars: longest program accepted.
        audit_hook: False leaves out the audit hook, so that only the kernel-enforced layers
            hold (to test them; never for agents).
    """

    name = "python"
    description = (
        "run Python 3 code (standard library, no network, files only in a scratch folder); "
        f"returns what it prints and the last expression's value, e.g. "
        f"{format_call('python', 'sorted([3, 1, 2])')}"
    )

    def __init__(
        self,
        timeout: float = 5.0,
        cpu_seconds: int | None = None,
        memory_mb: int = 256,
        max_output_chars: int = 4000,
        max_file_mb: int = 10,
        max_code_chars: int = 16_000,
        audit_hook: bool = True,
    ) -> None:
        self.timeout = float(check_limit("timeout", timeout, whole=False))
        if cpu_seconds is None:
            cpu_seconds = math.ceil(self.timeout)
        self.cpu_seconds = check_limit("cpu_seconds", cpu_seconds)
        self.memory_mb = check_limit("memory_mb", memory_mb)
        self.max_output_chars = check_limit("max_output_chars", max_output_chars)
        self.max_file_mb = check_limit("max_file_mb", max_file_mb)
        self.max_code_chars = check_limit("max_code_chars", max_code_chars)
        self.audit_hook = bool(audit_hook)

    def __call__(self, call_text: str) -> ToolResult:
        result, _ = self._run(call_text)
        return result

    def isolation(self) -> dict:
        """Which layers took effect on this machine, from a run of ``pass``: e.g.
        ``{"network_namespace": True, "user": "nobody", "no_new_privileges": True,
        "seccomp": True, "audit_hook": True}`` (``user``: ``unprivileged``, ``nobody`` after
        dropping root, or ``root`` when that was not possible)."""
        return self._run("pass")[1]

    def _run(self, call_text: str) -> tuple[ToolResult, dict]:
        start = time.perf_counter()
        code = _clean_code(call_text)
        problem = None
        if code is None:
            problem = f"the code must be text, not {type(call_text).__name__}"
        elif not code.strip():
            problem = "no code to run"
        elif len(code) > self.max_code_chars:
            problem = f"code too long ({len(code)} characters; limit {self.max_code_chars})"
        if problem is not None:
            return ToolResult(f"Error: {problem}", ok=False, error=problem), {}
        work = tempfile.mkdtemp(prefix="textgym-python-")
        try:
            output, status, error = self._execute(code, work)
        finally:
            _remove_folder(work)
        ok = shown = False
        if status is not None and error is None:  # the child's own report (it may be wrong)
            ok, shown = status.get("ok") is True, status.get("shown") is True
            error = None if ok else str(status.get("error") or "the program failed")[:300]
        text = output
        if not ok and not shown:
            text = f"{text}\nError: {error}" if text else f"Error: {error}"
        seconds = time.perf_counter() - start
        isolation = status.get("isolation", {}) if status else {}
        return ToolResult(text, ok=ok, error=None if ok else error, seconds=seconds), isolation

    def _execute(self, code: str, work: str) -> tuple[str, dict | None, str | None]:
        """Run ``code`` in ``work``: (output kept, the child's status or None, the parent's
        reason for stopping or judging it, or None)."""
        status_read, status_write = os.pipe()
        config = {
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_mb * 2**20,
            "file_bytes": self.max_file_mb * 2**20,
            "status_fd": status_write,
            "parent_pid": os.getpid(),
            "audit_hook": self.audit_hook,
        }
        # -s -P instead of -I: the same isolation (no user site, no script folder on the path;
        # the environment is built from scratch, so -E has nothing to ignore) but with
        # PYTHONHASHSEED honoured, so that printing a set gives the same order every run.
        command = [sys.executable, "-s", "-P", "-S", "-B", "-u", str(RUNNER), json.dumps(config)]
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": work,
            "TMPDIR": work,
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        deadline = time.monotonic() + self.timeout
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=work,
                env=environment,
                pass_fds=(status_write,),
                start_new_session=True,
            )
        except OSError as error:
            os.close(status_read)
            return "", None, f"could not start Python: {error}"
        finally:
            os.close(status_write)
        try:
            try:
                process.stdin.write(code.encode("utf-8", "surrogatepass"))
                process.stdin.close()
            except OSError:  # the child is gone already; its exit status says why
                pass
            keep = 4 * self.max_output_chars  # bytes: up to 4 per character in UTF-8
            output, written, status, stopped = _collect(
                process, status_read, deadline, keep, OUTPUT_STOP_FACTOR * keep
            )
        finally:
            _kill_group(process)
            os.close(status_read)
            process.stdout.close()
        text = output.decode("utf-8", "replace")
        if written > len(output) or len(text) > self.max_output_chars:
            text = text[: self.max_output_chars] + f"\n[output truncated: {written} bytes in all]"
        text = text.rstrip("\n")
        if stopped == "timeout":
            return text, None, f"timed out after {self.timeout:g} s"
        if stopped == "output":
            return text, None, f"output limit (more than {OUTPUT_STOP_FACTOR * keep} bytes)"
        if status is not None:
            return text, status, None
        returncode = process.returncode
        if returncode == -signal.SIGXCPU:
            return text, None, f"CPU time limit ({self.cpu_seconds} s)"
        if returncode < 0:
            return text, None, f"killed by signal {signal.Signals(-returncode).name}"
        return text, None, f"exited with code {returncode} before finishing"


def _clean_code(call_text: object) -> str | None:
    """The program in a call: dedented, without surrounding blank lines or a Markdown fence."""
    if not isinstance(call_text, str):
        return None
    lines = textwrap.dedent(call_text).strip("\n").split("\n")
    if lines and lines[0].startswith("```"):
        lines = lines[1:-1] if len(lines) > 1 and lines[-1].strip() == "```" else lines[1:]
    return "\n".join(lines)


def _collect(
    process: subprocess.Popen, status_fd: int, deadline: float, keep: int, stop: int
) -> tuple[bytes, int, dict | None, str | None]:
    """Read the child's output and status until it exits, the deadline passes or the output
    passes ``stop`` bytes: (the first ``keep`` bytes of output, bytes written in all, the status
    or None, ``"timeout"``/``"output"``/None). The child is left unreaped for the caller."""
    output, written, status = bytearray(), 0, bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "output")
        selector.register(status_fd, selectors.EVENT_READ, "status")
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(output), written, None, "timeout"
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "output":
                    output += chunk[: max(0, keep - len(output))]
                    written += len(chunk)
                    if written > stop:
                        return bytes(output), written, None, "output"
                else:
                    status += chunk[: max(0, 65536 - len(status))]
    # Both pipes are closed: wait (without reaping, so the group id stays ours) for the exit.
    while _running(process):
        if time.monotonic() >= deadline:
            return bytes(output), written, None, "timeout"
        time.sleep(0.002)
    try:
        parsed = json.loads(status.decode("utf-8", "replace").split("\n", 1)[0])
    except ValueError:
        parsed = None
    return bytes(output), written, parsed if isinstance(parsed, dict) else None, None


def _running(process: subprocess.Popen) -> bool:
    """Whether the child has not exited yet; an exited child is left unreaped (a zombie)."""
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:  # reaped already
        return False


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the child's whole process group, then reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _remove_folder(path: str) -> None:
    """Delete the working folder, even where the code made folders unreadable."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for folder, names, _ in os.walk(path):
        for name in names:
            child = os.path.join(folder, name)
            if not os.path.islink(child):
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700)
    shutil.rmtree(path, ignore_errors=True)

"""Sandboxed Python: an agent's code runs in a locked-down child process with hard limits.

Each call starts a fresh interpreter (``python -s -P -S -B -u``, ``PYTHONHASHSEED=0``: no user
site or script folder, standard library only, no ``.pyc`` writes, unbuffered, set iteration
order fixed) in a new session, with a minimal environment (no inherited variables, so no
secrets). The child program, :mod:`textgym.tools.sandbox_runner`, applies its limits and
isolation *before* the code runs: on Linux a mount namespace of its own whose only writable
place is a size-capped ``tmpfs`` working folder, ``/work`` (or, where mount namespaces are
refused, a Landlock ruleset on a fresh temporary folder), plus namespaces, seccomp,
``nobody`` and an audit hook. The parent here enforces the wall-clock limit (it kills the whole
process group), caps the output it keeps, and judges the call from what it observes itself (the
exit status, a signal, a limit it enforced), never from what the code could write; every way
the code can fail becomes a ``ToolResult`` with ``ok=False`` and a short reason ("timed out
after 2 s", "memory limit (256 MB)", "blocked: network access", ...). The parent never raises
because of what the code did; it raises :class:`~textgym.errors.SandboxUnavailableError` when
the machine offers no kernel file-system isolation and running without it was not allowed.

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

from textgym.errors import InvalidArgumentError, SandboxUnavailableError
from textgym.tools.base import ToolResult, check_limit, format_call

RUNNER = Path(__file__).with_name("sandbox_runner.py")
OUTPUT_STOP_FACTOR = 64  # the code is stopped once it has written this many times what is kept
FILESYSTEM_MODES = ("auto", "namespace", "landlock", "none")
ALLOW_UNISOLATED_VARIABLE = "TEXTGYM_ALLOW_UNISOLATED_PYTHON"  # "1": the opt-in, for a machine


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
        max_disk_mb: size of the working folder (a ``tmpfs``), in MiB: all files together.
            Bounds disk use in the ``"namespace"`` mode only; elsewhere only ``max_file_mb``
            per file applies.
        max_files: files and folders the working folder holds (``"namespace"`` mode).
        max_code_chars: longest program accepted.
        filesystem: how the kernel keeps the code away from the machine's files: ``"auto"``
            (a mount namespace, else Landlock), ``"namespace"`` or ``"landlock"`` (that one,
            or :class:`~textgym.errors.SandboxUnavailableError`), ``"none"`` (no kernel
            file-system layer: needs ``allow_unisolated``).
        allow_unisolated: run the code even where no kernel file-system layer is available
            (the audit hook and file permissions are then all that guard the machine's files).
            Default: False unless the environment variable ``TEXTGYM_ALLOW_UNISOLATED_PYTHON``
            is ``1``.
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
        max_disk_mb: int = 64,
        max_files: int = 4096,
        max_code_chars: int = 16_000,
        filesystem: str = "auto",
        allow_unisolated: bool | None = None,
        audit_hook: bool = True,
    ) -> None:
        if filesystem not in FILESYSTEM_MODES:
            raise InvalidArgumentError(
                f"filesystem must be one of {list(FILESYSTEM_MODES)}, got {filesystem!r:.60}"
            )
        if allow_unisolated is None:
            allow_unisolated = os.environ.get(ALLOW_UNISOLATED_VARIABLE) == "1"
        if not isinstance(allow_unisolated, bool):
            raise InvalidArgumentError(
                f"allow_unisolated must be True or False, got {allow_unisolated!r:.60}"
            )
        self.timeout = float(check_limit("timeout", timeout, whole=False))
        if cpu_seconds is None:
            cpu_seconds = math.ceil(self.timeout)
        self.cpu_seconds = check_limit("cpu_seconds", cpu_seconds)
        self.memory_mb = check_limit("memory_mb", memory_mb)
        self.max_output_chars = check_limit("max_output_chars", max_output_chars)
        self.max_file_mb = check_limit("max_file_mb", max_file_mb)
        self.max_disk_mb = check_limit("max_disk_mb", max_disk_mb)
        self.max_files = check_limit("max_files", max_files)
        self.max_code_chars = check_limit("max_code_chars", max_code_chars)
        self.filesystem = filesystem
        self.allow_unisolated = allow_unisolated
        self.audit_hook = bool(audit_hook)

    def __call__(self, call_text: str) -> ToolResult:
        result, _ = self._run(call_text)
        return result

    def isolation(self) -> dict:
        """Which layers took effect on this machine, from a run of ``pass``: e.g.
        ``{"filesystem": "namespace", "network_namespace": True, "user": "nobody",
        "no_new_privileges": True, "seccomp": True, "audit_hook": True, "problems": []}``
        (``filesystem``: ``namespace``, ``landlock`` or ``none``; ``user``: ``unprivileged``,
        ``nobody`` after dropping root, ``root without capabilities`` where ``nobody`` cannot
        read the standard library, or ``root`` where not even that was possible; ``problems``:
        why a layer did not take effect). Raises
        :class:`~textgym.errors.SandboxUnavailableError` as a call would."""
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
            output, isolation, outcome, error = self._execute(code, work)
        finally:
            _remove_folder(work)
        if isolation.get("refused"):
            raise SandboxUnavailableError(self._refusal(isolation))
        text, shown = output, False
        if error is not None and outcome is not None:  # the runner's label of the failure
            label = outcome.get("error")
            if isinstance(label, str) and label:  # text only: no lone surrogates, capped
                error = label[:300].encode("utf-8", "replace").decode("utf-8")
                shown = outcome.get("shown") is True
        if error is not None and not shown:
            text = f"{text}\nError: {error}" if text else f"Error: {error}"
        seconds = time.perf_counter() - start
        isolation = {key: value for key, value in isolation.items() if key != "refused"}
        return ToolResult(text, ok=error is None, error=error, seconds=seconds), isolation

    def _refusal(self, isolation: dict) -> str:
        """Why the runner did not run the code, and what to do."""
        problems = "; ".join(isolation.get("problems") or ()) or "no reason given"
        if self.filesystem in ("namespace", "landlock"):
            return (
                f"PythonSandbox(filesystem={self.filesystem!r}): not available on this machine "
                f"({problems}); use filesystem='auto'"
            )
        return (
            "PythonSandbox: no kernel isolation of the machine's files is available here "
            f"(mount namespace and Landlock both failed: {problems}), so model-written code "
            "would be guarded by the audit hook and file permissions only. Run on Linux with "
            "user namespaces or Landlock enabled, or accept the risk with "
            f"PythonSandbox(allow_unisolated=True) or {ALLOW_UNISOLATED_VARIABLE}=1"
        )

    def _execute(self, code: str, work: str) -> tuple[str, dict, dict | None, str | None]:
        """Run ``code`` from ``work``: (output kept, the isolation report, the runner's label of
        the outcome or None, the reason the call failed or None). Whether it failed comes from
        what this process observed: the timeout, the output limit, the exit status."""
        status_read, status_write = os.pipe()
        config = {
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_mb * 2**20,
            "file_bytes": self.max_file_mb * 2**20,
            "disk_bytes": self.max_disk_mb * 2**20,
            "max_files": self.max_files,
            "filesystem": self.filesystem,
            "allow_unisolated": self.allow_unisolated,
            "status_fd": status_write,
            "parent_pid": os.getpid(),
            "audit_hook": self.audit_hook,
        }
        # -s -P instead of -I: the same isolation (no user site, no script folder on the path;
        # the environment is built from scratch, so -E has nothing to ignore) but with
        # PYTHONHASHSEED honoured, so that printing a set gives the same order every run.
        command = [sys.executable, "-s", "-P", "-S", "-B", "-u", str(RUNNER), json.dumps(config)]
        environment = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}
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
            return "", {}, None, f"could not start Python: {error}"
        finally:
            os.close(status_write)
        try:
            try:
                process.stdin.write(code.encode("utf-8", "surrogatepass"))
                process.stdin.close()
            except OSError:  # the child is gone already; its exit status says why
                pass
            keep = 4 * self.max_output_chars  # bytes: up to 4 per character in UTF-8
            output, written, records, stopped = _collect(
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
        # The first record is written before the code runs: which layers took effect. Later
        # records may come from the code itself, so they only ever label a failure.
        isolation = records[0] if records else {}
        outcome = records[-1] if len(records) > 1 else None
        returncode = process.returncode
        if stopped == "timeout":
            return text, isolation, None, f"timed out after {self.timeout:g} s"
        if stopped == "output":
            return (
                text,
                isolation,
                None,
                f"output limit (more than {OUTPUT_STOP_FACTOR * keep} bytes)",
            )
        if returncode == 0:
            return text, isolation, outcome, None
        if returncode == -signal.SIGXCPU:
            return text, isolation, None, f"CPU time limit ({self.cpu_seconds} s)"
        if returncode < 0:
            return text, isolation, None, f"killed by signal {_signal_name(-returncode)}"
        return text, isolation, outcome, f"exited with code {returncode}"


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
) -> tuple[bytes, int, list[dict], str | None]:
    """Read the child's output and status records until it exits, the deadline passes or the
    output passes ``stop`` bytes: (the first ``keep`` bytes of output, bytes written in all, the
    status records, JSON objects one per line, ``"timeout"``/``"output"``/None). The child is
    left unreaped for the caller."""
    output, written, status = bytearray(), 0, bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, "output")
        selector.register(status_fd, selectors.EVENT_READ, "status")
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(output), written, _records(status), "timeout"
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data == "output":
                    output += chunk[: max(0, keep - len(output))]
                    written += len(chunk)
                    if written > stop:
                        return bytes(output), written, _records(status), "output"
                else:
                    status += chunk[: max(0, 65536 - len(status))]
    # Both pipes are closed: wait (without reaping, so the group id stays ours) for the exit.
    while _running(process):
        if time.monotonic() >= deadline:
            return bytes(output), written, _records(status), "timeout"
        time.sleep(0.002)
    return bytes(output), written, _records(status), None


def _records(status: bytes) -> list[dict]:
    """The status records: one JSON object per complete line (anything else is skipped)."""
    records = []
    for line in bytes(status).split(b"\n")[:-1]:
        try:
            record = json.loads(line.decode("utf-8", "replace"))
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


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


def _signal_name(number: int) -> str:
    """``SIGKILL`` for 9; real-time signals have no name in :class:`signal.Signals`."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number}"


def _remove_folder(path: str) -> None:
    """Delete the working folder, even where the code made folders unreadable or nested them
    deeper than Python's recursion limit (``chmod -R``, ``rm -rf``)."""
    with contextlib.suppress(OSError):
        os.rmdir(path)  # empty: the code worked in its namespace's own tmpfs
        return
    try:
        for command in (["chmod", "-R", "u+rwx", "--", path], ["rm", "-rf", "--", path]):
            subprocess.run(command, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(RecursionError):
        shutil.rmtree(path, ignore_errors=True)

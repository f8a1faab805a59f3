"""The agent's tools: the call syntax, the calculator, and the Python sandbox against hostile code.

Every hostile program must come back as an ``ok=False`` result with a short reason, leave
nothing behind outside its working folder, and leave the sandbox working for the next call.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import textgym
from textgym.errors import InvalidArgumentError, SandboxUnavailableError
from textgym.tools import (
    Calculator,
    PythonSandbox,
    Tool,
    ToolCall,
    ToolResult,
    find_tool_call,
    format_call,
    sandbox_runner,
)
from textgym.tools.python_sandbox import ALLOW_UNISOLATED_VARIABLE

# --- the call syntax -------------------------------------------------------------------------


def test_find_tool_call_returns_name_argument_and_span():
    text = "First <calc>2*(3+4)</calc> then <python>print(1)</python>"
    call = find_tool_call(text)
    assert call == ToolCall("calc", "2*(3+4)", (6, 26))
    name, argument, (start, end) = call
    assert text[start:end] == format_call(name, argument)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("no call here", None),
        ("<calc>1+1", None),  # not closed yet
        ("<python>\nprint(1)\n", None),
        ("<calc>1+1</python>", None),  # closed by another tool's tag
        ("<b>bold</b> <tool>x</tool>", None),  # not tool names
        ("<python>x = 1\n<calc>2+2</calc>", ("calc", "2+2")),  # an unfinished call before
        ("<calc>1+<calc>2*3</calc>", ("calc", "2*3")),  # the nearest opening tag counts
        ("</calc> <calc>4</calc>", ("calc", "4")),  # a stray closing tag is skipped
        ("<calc></calc>", ("calc", "")),
        ("<python>\nxs = [3, 1]\nsorted(xs)\n</python>", ("python", "\nxs = [3, 1]\nsorted(xs)\n")),
        ("<python>a</python><calc>1</calc>", ("python", "a")),
        ("<calc>1</calc> <calc>2</calc>", ("calc", "1")),
    ],
)
def test_find_tool_call_takes_the_first_complete_call(text, expected):
    call = find_tool_call(text)
    assert (None if call is None else (call.name, call.argument)) == expected


def test_find_tool_call_only_knows_the_names_it_is_given():
    assert find_tool_call("<calc>1</calc>", names=["python"]) is None
    assert find_tool_call("<search>cats</search>", names=["search"]).argument == "cats"
    assert find_tool_call("<calc>1</calc>", names=[]) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="<>/calcpython 12+", max_size=40))
def test_find_tool_call_on_any_text(text):
    call = find_tool_call(text)
    if call is not None:
        start, end = call.span
        assert text[start:end] == format_call(call.name, call.argument)
        assert f"<{call.name}>" not in call.argument
        assert find_tool_call(text[: end - 1]) is None  # no call is complete before this one


def test_tools_follow_the_protocol():
    for tool in (Calculator(), PythonSandbox()):
        assert isinstance(tool, Tool)
        assert tool.name in tool.description and "\n" not in tool.description


# --- the calculator --------------------------------------------------------------------------

calc = Calculator()


@pytest.mark.parametrize(
    "expression, text",
    [
        ("2*(3+4)", "14"),
        ("0.1 + 0.2", "0.3"),
        ("1/3", "1/3 = 0.333333333333..."),
        ("-7/4", "-1.75"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2**-2", "0.25"),
        ("(-2)**3", "-8"),
        ("2**100", "1267650600228229401496703205376"),
        ("1e3 + 1_000", "2000"),
        ("1/7*7", "1"),
        ("  3.14159 * 2 ", "6.28318"),
    ],
)
def test_calculator_is_exact(expression, text):
    result = calc(expression)
    assert result.ok and result.error is None and result.text == text


@pytest.mark.parametrize(
    "expression, error",
    [
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0**-1", "division by zero"),
        ("9**9**9", "result too large"),
        ("10**1001", "number too large"),
        ("1e99999", "number too large"),
        ("2^10", "use **"),
        ("4**0.5", "whole-number exponents"),
        ("x + 1", "only numbers"),
        ("__import__('os').system('ls')", "only numbers"),
        ("abs(-1)", "only numbers"),
        ("(1+2", "not an arithmetic expression"),
        ("", "empty expression"),
        ("1+" * 300 + "1", "too long"),
        ("True + 1", "not a number"),
        ("1j", "not a number"),
    ],
)
def test_calculator_reports_bad_calls(expression, error):
    result = calc(expression)  # "too large" calls are refused by the size estimate, not computed
    assert not result.ok and error in result.error
    assert result.text == f"Error: {result.error}"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(alphabet="0123456789.+-*/%() e_^", max_size=60)))
def test_calculator_never_raises(text):
    result = calc(text)
    assert isinstance(result, ToolResult) and result.ok == (result.error is None)


def test_calculator_answers_non_text_with_an_error():
    result = calc(None)  # type: ignore[arg-type]
    assert not result.ok and "text" in result.error


# --- the Python sandbox: normal use ----------------------------------------------------------

TIMEOUT = 1.5


@pytest.fixture(scope="module")
def sandbox() -> PythonSandbox:
    # CPU limit above the wall-clock one, so that a busy loop reports the wall-clock timeout.
    return PythonSandbox(timeout=TIMEOUT, cpu_seconds=5, memory_mb=256, max_output_chars=2000)


def still_works(sandbox: PythonSandbox) -> None:
    result = sandbox("6 * 7")
    assert result.ok and result.text == "42", result


@pytest.mark.parametrize(
    "code, text",
    [
        ("2 + 2", "4"),
        ("print('hello')\nprint('world')", "hello\nworld"),
        ("xs = [5, 3, 8, 1]\nprint(sum(xs))\nsorted(xs)", "17\n[1, 3, 5, 8]"),
        ("import statistics\nstatistics.mean([2, 4, 9]), statistics.median([3, 1, 2])", "(5, 2)"),
        ("from fractions import Fraction\nFraction(1, 3) + Fraction(1, 6)", "Fraction(1, 2)"),
        ("x = 1", ""),  # no last expression, nothing printed
        ("print('x')\nNone", "x"),
        ("    indented = 3\n    indented * 2", "6"),  # dedented
        ("```python\nprint('fenced')\n```", "fenced"),
        ("import sys\nprint('to stderr', file=sys.stderr)", "to stderr"),
        ("import sys\nprint('done')\nsys.exit(0)", "done"),
    ],
)
def test_sandbox_runs_code(sandbox, code, text):
    result = sandbox(code)
    assert result.ok and result.error is None, result
    assert result.text == text


def test_sandbox_files_live_in_a_fresh_folder_deleted_afterwards(sandbox):
    code = (
        "import os, pathlib\n"
        "pathlib.Path('data.csv').write_text('a,b\\n1,2\\n')\n"
        "print(open('data.csv').read().split())\n"
        "os.getcwd()"
    )
    result = sandbox(code)
    assert result.ok, result
    lines = result.text.split("\n")
    assert lines[0] == "['a,b', '1,2']"
    if sandbox.isolation()["filesystem"] == "namespace":  # a tmpfs of the call's own namespace
        assert ast.literal_eval(lines[1]) == sandbox_runner.WORK
    again = sandbox("import os\nos.listdir('.')")
    assert again.ok and again.text == "[]"
    # Under Landlock the folder is a temporary folder of the machine's, deleted afterwards.
    landlock = PythonSandbox(timeout=TIMEOUT, filesystem="landlock")
    try:
        result = landlock(code)
    except SandboxUnavailableError:
        return
    folder = ast.literal_eval(result.text.split("\n")[1])
    assert result.ok and folder != sandbox_runner.WORK and not os.path.exists(folder)


def test_sandbox_reports_an_exception_with_its_traceback(sandbox):
    result = sandbox("x = 1\ny = x / 0")
    assert not result.ok and result.error == "ZeroDivisionError: division by zero"
    assert 'File "<python>", line 2' in result.text and "y = x / 0" in result.text
    assert "sandbox_runner" not in result.text
    syntax = sandbox("def f(:\n  pass")
    assert not syntax.ok and syntax.error.startswith("SyntaxError")
    still_works(sandbox)


def test_sandbox_keeps_output_before_an_error(sandbox):
    result = sandbox("print('partial')\nraise ValueError('bad value')")
    assert not result.ok and result.error == "ValueError: bad value"
    assert result.text.startswith("partial\n")


@pytest.mark.parametrize(
    "code, error",
    [
        (None, "must be text"),
        ("", "no code"),
        ("\n  \n", "no code"),
        ("x = 1\n" * 5000, "code too long"),
    ],
)
def test_sandbox_answers_bad_calls_without_running(sandbox, code, error):
    result = sandbox(code)
    assert not result.ok and error in result.error and result.text == f"Error: {result.error}"


def test_sandbox_environment_carries_no_secrets(sandbox, monkeypatch):
    monkeypatch.setenv("TEXTGYM_TEST_SECRET", "hunter2")
    result = sandbox("import os\ndict(os.environ)")
    assert result.ok and "hunter2" not in result.text and "TEXTGYM_TEST_SECRET" not in result.text


# --- the Python sandbox: hostile code --------------------------------------------------------

HOSTILE = [
    # (id, code, the start of the reported error)
    ("busy loop", "while True: pass", f"timed out after {TIMEOUT:g} s"),
    ("sleep", "import time\ntime.sleep(30)", f"timed out after {TIMEOUT:g} s"),
    ("fork bomb", "import os\nwhile True:\n    os.fork()", "blocked: new processes"),
    ("os.system", "import os\nos.system('echo hi')", "blocked: new processes"),
    ("subprocess", "import subprocess\nsubprocess.run(['ls'])", "blocked: new processes"),
    ("exec", "import os\nos.execv('/bin/sh', ['sh'])", "blocked: new processes"),
    ("pty", "import pty\npty.fork()", ""),  # refused forkpty, then no /dev/ptmx or no fork
    ("multiprocessing", "import multiprocessing as m\nm.Process(target=print).start()", "blocked"),
    ("socket", "import socket\nsocket.create_connection(('1.1.1.1', 80))", "blocked: network"),
    ("raw socket", "import socket\nsocket.socket()", "blocked: network access"),
    ("dns", "import socket\nsocket.gethostbyname('example.com')", "blocked: network access"),
    ("urllib", "import urllib.request\nurllib.request.urlopen('http://x.org')", "blocked: network"),
    ("read /etc/passwd", "open('/etc/passwd').read()", "blocked: reading outside"),
    ("list /", "import os\nos.listdir('/')", "blocked: reading outside"),
    ("walk up", "open('../../../../etc/hostname').read()", "blocked: '..' in a path"),
    ("proc environ", "open('/proc/self/environ').read()", "blocked: reading outside"),
    ("bytes path", "open(b'/etc/passwd').read()", "blocked: reading outside"),
    ("pathlib", "import pathlib\npathlib.Path('/etc/passwd').read_text()", "blocked: reading"),
    ("chdir /", "import os\nos.chdir('/')\nos.listdir()", "blocked: reading outside"),
    ("symlink", "import os\nos.symlink('/etc/passwd', 'p')", "blocked: links"),
    ("ctypes", "import ctypes\nctypes.CDLL(None).fork()", "blocked: ctypes"),
    ("subinterpreter", "import _xxsubinterpreters as s\ns.create()", "blocked: subinterpreters"),
    ("gc", "import gc\ngc.get_objects()", "blocked: garbage-collector"),
    ("settrace", "import sys\nsys.settrace(lambda *a: None)", "blocked: tracing"),
    (
        "raise limits",
        "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))",
        "blocked",
    ),
    ("kill parent", "import os\nos.kill(os.getppid(), 0)", "blocked: signals"),  # signal 0:
    ("kill all", "import os\nos.kill(-1, 0)", "blocked: signals"),  # harmless if it got through
    ("os._exit", "print('bye')\nimport os\nos._exit(3)", "exited with code 3"),
    ("sys.exit", "import sys\nsys.exit(3)", "exited with code 3"),
    ("self kill", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed by signal"),
    ("close stdout", "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(30)", "timed out"),
    (
        "stack overflow",
        "import sys\nsys.setrecursionlimit(10**6)\nf = lambda n: f(n + 1)\nf(0)",
        "",
    ),
    ("huge output", "while True:\n    print('y' * 1000)", "output limit"),
    (
        "patched builtins",
        "import builtins, os, posixpath\n"
        "builtins.isinstance = builtins.issubclass = lambda *a: True\n"
        "builtins.str = builtins.type = object\n"
        "os.getcwd = lambda: '/etc'\nposixpath.normpath = lambda p: '.'\n"
        "open('/etc/passwd').read()",
        "blocked: reading outside",
    ),
    (
        "lying str subclass",
        "class S(str):\n"
        "    def startswith(self, *a): return True\n"
        "    def __eq__(self, other): return True\n"
        "    __hash__ = str.__hash__\n"
        "open(S('/etc/passwd')).read()",
        "blocked: reading outside",
    ),
    (
        "patched refusal",  # the hook still raises (a TypeError), so the read still fails
        "import __main__\n__main__.Blocked.__new__ = lambda *a: None\nopen('/etc/passwd').read()",
        "",
    ),
]


@pytest.mark.parametrize("code, error", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_sandbox_contains_hostile_code(sandbox, code, error):
    result = sandbox(code)
    assert not result.ok, result
    assert result.error.startswith(error), result
    assert result.text  # the agent sees what happened
    assert "root:" not in result.text  # nothing of /etc/passwd came through
    still_works(sandbox)


@pytest.mark.parametrize(
    "code",
    [
        "x = bytearray(10**10)",
        "xs = []\nwhile True:\n    xs.append('a' * 10**6)",
        "xs = [0] * 10**9",
    ],
    ids=["huge allocation", "growing list", "big list"],
)
def test_sandbox_memory_limit(code):
    # A wall-clock limit far above what reaching 256 MB takes, even on a busy machine.
    result = PythonSandbox(timeout=20, memory_mb=256)(code)
    assert not result.ok and result.error == "memory limit (256 MB)", result


def test_sandbox_cpu_limit():
    result = PythonSandbox(timeout=10, cpu_seconds=1)("while True: pass")
    assert not result.ok and result.error == "CPU time limit (1 s)"  # not the 10 s wall limit


def test_sandbox_truncates_long_output(sandbox):
    result = sandbox("for i in range(10_000):\n    print(i)")
    assert result.ok  # long, but under the point where it is stopped
    assert result.text.startswith("0\n1\n2\n")
    assert "[output truncated: 48890 bytes in all]" in result.text
    assert len(result.text) < 2100


def test_sandbox_does_not_write_or_delete_outside_its_folder(sandbox, tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    for code in (
        f"open({str(tmp_path / 'evil.txt')!r}, 'w').write('x')",
        f"import os\nos.remove({str(victim)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.rename({str(victim)!r}, 'stolen.txt')",
        f"import os\nos.chmod({str(victim)!r}, 0)",
        f"open({str(victim)!r}, 'a').write('x')",
    ):
        result = sandbox(code)
        assert not result.ok and result.error.startswith("blocked: writing outside"), result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert victim.read_text() == "precious"
    still_works(sandbox)


def test_sandbox_cannot_read_the_package_data(sandbox):
    data = next(Path(textgym.__file__).parent.joinpath("data").glob("*.jsonl"))
    result = sandbox(f"open({str(data)!r}).read()")
    assert not result.ok and data.read_text()[:40] not in result.text
    # refused by the audit hook, or (in the namespace) no such file: the path may even fall
    # inside the sandbox's own /work, which holds nothing of the machine's
    assert result.error.startswith(("blocked: reading outside", "FileNotFoundError")), result


def test_sandbox_caught_refusals_let_the_code_go_on(sandbox):
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80))\n"
        "except PermissionError as e:\n"
        "    print('refused:', e)\n"
        "'still running'"
    )
    result = sandbox(code)
    assert result.ok and result.text == "refused: network access\n'still running'"


def test_sandbox_limits_file_size(sandbox):
    result = sandbox("open('big', 'wb').write(b'x' * (20 * 2**20))")
    assert not result.ok and "File too large" in result.error


def test_sandbox_calls_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    tool = PythonSandbox(timeout=5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(tool, [f"{i} * {i}" for i in range(8)]))
    assert [r.text for r in results] == [str(i * i) for i in range(8)]


# --- the kernel layers under the audit hook --------------------------------------------------


def test_isolation_report(sandbox):
    report = sandbox.isolation()
    assert set(report) == {
        "filesystem",
        "network_namespace",
        "user",
        "no_new_privileges",
        "seccomp",
        "audit_hook",
        "problems",
    }
    users = ("unprivileged", "nobody", "root without capabilities", "root")
    assert report["audit_hook"] is True and report["user"] in users
    assert report["filesystem"] in ("namespace", "landlock")  # "none" is refused by default
    if report["filesystem"] == "namespace" and os.geteuid() == 0:
        assert report["user"] == "nobody"  # nobody can always read the new root


def test_exit_status_decides_success():
    """What the parent observes decides: a program that exits 0 succeeded, as in Python, and one
    that raised failed, whatever either wrote to the status channel (any descriptor)."""
    tool = PythonSandbox(timeout=3)
    result = tool("print('bye')\nimport os\nos._exit(0)")
    assert result.ok and result.text == "bye", result
    forge = (
        "import os\n"
        "for fd in range(3, 4096):\n"
        "    try:\n"
        "        os.write(fd, RECORD + b'\\n')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    success = 'RECORD = b\'{"ok": true, "error": null, "shown": false}\'\n' + forge
    for ending, error in (
        ("raise ValueError('real failure')", "ValueError: real failure"),
        ("os._exit(1)", "exited with code 1"),
        ("import signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed by signal SIGKILL"),
    ):
        result = tool(success + ending)
        assert not result.ok and result.error == error, result
    # A forged isolation record (a refusal) changes nothing either: only the first one counts.
    refusal = 'RECORD = b\'{"refused": true, "filesystem": "none"}\'\n' + forge
    result = tool(refusal + "'fine'")
    assert result.ok and result.text == "'fine'", result


def test_kernel_layers_hold_without_the_audit_hook():
    """What holds even if the code gets past the audit hook, where this machine provides it."""
    tool = PythonSandbox(timeout=3, audit_hook=False)
    report = tool.isolation()
    if not (report["seccomp"] or report["user"] != "root"):
        pytest.skip(f"no kernel layer against new processes here: {report}")
    attempts = {"fork": "os.fork()"}  # refused by seccomp or by RLIMIT_NPROC (non-root)
    if report["seccomp"] or report["user"] == "nobody":
        attempts["signal the parent"] = "os.kill(os.getppid(), 0)"
    if report["seccomp"] or report["network_namespace"]:
        attempts["connect"] = "socket.create_connection(('1.1.1.1', 80), timeout=1)"
    code = "import os, socket\n" + "".join(
        f"try:\n    {attempt}\n    print({name!r}, 'ALLOWED')\n"
        f"except OSError:\n    print({name!r}, 'refused')\n"
        for name, attempt in attempts.items()
    )
    result = tool(code)
    assert result.ok, result
    assert result.text == "\n".join(f"{name} refused" for name in attempts)
    if report["seccomp"] or report["user"] != "root":  # root may raise its own hard limits
        raised = tool("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))")
        assert not raised.ok and raised.error.startswith("ValueError"), raised


# --- escapes: none may read a file outside or write one, with or without the audit hook -------

ESCAPES = [
    # (id, code that reads SECRET or writes into OUTSIDE; it ends with the operation that leaks)
    (
        "tables through __main__",
        "import __main__\n"
        "for name in ('WRITE_EVENTS', 'READ_EVENTS', 'REFUSED_EVENTS', 'BLOCKED_MODULES'):\n"
        "    getattr(__main__, name).clear()\n"
        "import os\n"
        "os.rename(SECRET, 'x')\n"
        "open('x').read()",
    ),
    (
        "tables through frames",
        "import sys\n"
        "frame = sys._getframe()\n"
        "while frame is not None:\n"
        "    for name, table in list(frame.f_globals.items()):\n"
        "        if name.isupper() and hasattr(table, 'clear'):\n"
        "            table.clear()\n"
        "    frame = frame.f_back\n"
        "import os\n"
        "os.rename(SECRET, 'x')\n"
        "open('x').read()",
    ),
    (
        "the hook's own locals",
        "try:\n"
        "    open('/x-none').read()\n"
        "except PermissionError as e:\n"
        "    tb = e.__traceback__\n"
        "    while tb.tb_next:\n"
        "        tb = tb.tb_next\n"
        "    for value in tb.tb_frame.f_locals.values():\n"
        "        if hasattr(value, 'clear'):\n"
        "            value.clear()\n"
        "import os\n"
        "os.rename(SECRET, 'x')\n"
        "open('x').read()",
    ),
    ("gc", "import gc\n[o for o in gc.get_objects() if type(o) is dict]\nopen(SECRET).read()"),
    (
        "a changing __fspath__",
        "import io\n"
        "class P:\n"
        "    calls = 0\n"
        "    def __fspath__(self):\n"
        "        P.calls += 1\n"
        "        return SECRET if P.calls == 1 else 'harmless.txt'\n"
        "io.FileIO(P()).read()",
    ),
    ("rename in", "import os\nos.rename(SECRET, 'x')\nopen('x').read()"),
    (
        "rename out",
        "import os\nopen('mine', 'w').write('x')\nos.rename('mine', OUTSIDE + '/planted')",
    ),
    ("hard link in", "import os\nos.link(SECRET, 'x')\nopen('x').read()"),
    ("symlink in", "import os\nos.symlink(SECRET, 'x')\nopen('x').read()"),
    ("symlink out", "import os\nos.symlink(OUTSIDE + '/planted', 'x')\nopen('x', 'w').write('x')"),
    ("/proc/self/root", "open('/proc/self/root' + SECRET).read()"),
    ("/proc/self/cwd", "open('/proc/self/cwd/' + '../' * 12 + SECRET).read()"),
    (
        "/proc/self/fd",
        "import os\n[os.readlink('/proc/self/fd/' + f) for f in os.listdir('/proc/self/fd')]",
    ),
    ("chdir out", "import os\nos.chdir(OUTSIDE)\nopen('secret.txt').read()"),
    ("write outside", "open(OUTSIDE + '/planted', 'w').write('x')"),
    ("delete outside", "import os\nos.remove(SECRET)"),
    ("chmod outside", "import os\nos.chmod(SECRET, 0o777)"),
    ("chown outside", "import os\nos.chown(SECRET, 65534, 65534)"),
    ("utime outside", "import os\nos.utime(SECRET, (0, 0))"),
    ("xattr outside", "import os\nos.setxattr(SECRET, 'user.x', b'1')"),
    (
        "dir_fd and ..",
        "import os\nos.mkdir('x')\nos.chdir('x')\nfd = os.open('..', os.O_RDONLY)\n"
        "os.chmod('../' * 12 + SECRET[1:], 0o777, dir_fd=fd)",
    ),
    (
        "time zones' symbolic links",
        "open('/usr/share/zoneinfo/' + 'posix/Africa/../' * 6 + '../' * 6 + SECRET[1:]).read()",
    ),
]
MODES = {  # the full sandbox, and each kernel file-system layer alone (no audit hook)
    "full": dict(),
    "namespace alone": dict(filesystem="namespace", audit_hook=False),
    "landlock alone": dict(filesystem="landlock", audit_hook=False),
}


@pytest.fixture(scope="module", params=list(MODES))
def mode_sandbox(request) -> PythonSandbox:
    tool = PythonSandbox(timeout=3, **MODES[request.param])
    try:
        tool.isolation()
    except SandboxUnavailableError as error:
        pytest.skip(f"{request.param}: not on this machine ({error})")
    return tool


@pytest.mark.parametrize("code", [e[1] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escapes_fail(mode_sandbox, code, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-7f3a")
    tmp_path.chmod(0o777)  # so that only the sandbox, not file permissions, keeps nobody out
    setup = f"SECRET, OUTSIDE = {str(secret)!r}, {str(tmp_path)!r}\n"
    before = secret.stat()
    result = mode_sandbox(setup + code)
    assert not result.ok, result
    assert "SECRET-7f3a" not in result.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.txt"]
    assert secret.read_text() == "SECRET-7f3a"
    after = secret.stat()
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (
        before.st_mode,
        before.st_uid,
        before.st_mtime_ns,
    )
    assert not os.listxattr(secret)


@pytest.fixture
def victim():
    """A process of another sandbox call's user (nobody when the tests run as root)."""
    command = ["sleep", "60"]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    process = subprocess.Popen(command)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize(
    "code",
    [
        "import os, fcntl\nr, w = os.pipe()\nfcntl.fcntl(r, fcntl.F_SETOWN, PID)\n"
        "fcntl.fcntl(r, 10, 9)\nfcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC | os.O_NONBLOCK)\n"
        "os.write(w, b'x')\nimport time\ntime.sleep(0.2)\nraise SystemExit(1)",
        "import os\nos.kill(PID, 9)",
        "import os\nos.setpriority(os.PRIO_PROCESS, PID, 19)",
        "import os\nos.sched_setaffinity(PID, {0})",
        "import os\nos.sched_setscheduler(PID, os.SCHED_IDLE, os.sched_param(0))",
        "import _socket, fcntl, os, struct\n"
        "a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)\n"
        "fcntl.ioctl(a.fileno(), 0x8901, struct.pack('i', PID))\n"  # FIOSETOWN
        "fcntl.fcntl(a.fileno(), fcntl.F_SETFL, os.O_ASYNC)\nb.send(b'x')",
    ],
    ids=["F_SETOWN signal", "kill", "setpriority", "affinity", "scheduler", "SIGIO of a socket"],
)
def test_other_processes_are_out_of_reach(mode_sandbox, victim, code):
    affinity = os.sched_getaffinity(victim.pid)
    result = mode_sandbox(f"PID = {victim.pid}\n" + code)
    assert not result.ok, result
    assert victim.poll() is None  # alive
    assert os.getpriority(os.PRIO_PROCESS, victim.pid) == 0
    assert os.sched_getaffinity(victim.pid) == affinity
    assert os.sched_getscheduler(victim.pid) == os.SCHED_OTHER


def test_kernel_refusals_past_the_hook(mode_sandbox):
    """Memory the address-space limit would not count, and watching the machine's files:
    refused by seccomp, with or without the audit hook (which also refuses the ctypes)."""
    if not mode_sandbox.isolation()["seccomp"]:
        pytest.skip("no seccomp filter on this machine (x86-64 Linux only)")
    for code in (
        "import os\nos.memfd_create('x')",
        "import _socket\n_socket.socketpair()",  # buffers past the memory limit
        "import fcntl, os\nr, w = os.pipe()\nfcntl.fcntl(w, 1031, 1 << 24)",  # F_SETPIPE_SZ
        *(
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"fd = libc.syscall({number}, 0, 0)\n"
            "assert fd >= 0, ctypes.get_errno()"
            for number in (300, 253, 294)  # fanotify_init, inotify_init, inotify_init1
        ),
    ):
        result = mode_sandbox(code)
        assert not result.ok, result


@pytest.mark.parametrize("mode", ["namespace", "landlock"])
def test_site_packages_are_out_of_reach(mode):
    """The interpreter's installed packages: hidden (an empty folder) in the namespace, names
    only (no file can be read) under Landlock; the standard library beside them works."""
    tool = PythonSandbox(timeout=3, filesystem=mode, audit_hook=False)
    try:
        tool.isolation()
    except SandboxUnavailableError:
        pytest.skip(f"no {mode} here")
    import sysconfig

    packages = os.path.join(sysconfig.get_paths()["stdlib"], "site-packages")  # pip's, at least
    files = sorted(Path(packages).glob("*/*.py"))
    if not files:
        pytest.skip(f"{packages} holds no package here")
    result = tool(f"open({str(files[0])!r}).read()")
    assert not result.ok and files[0].read_text()[:40] not in result.text, result
    if mode == "namespace":
        assert tool(f"import os\nos.listdir({packages!r})").text == "[]"
    assert tool("import json, sqlite3, zoneinfo\njson.dumps([1])").text == "'[1]'"


def test_what_the_code_writes_cannot_break_the_parent():
    tool = PythonSandbox(timeout=5, filesystem="landlock")
    write_all = (  # to every descriptor, the status channel among them
        "import os\nfor fd in range(3, 4096):\n    try:\n        os.write(fd, RECORD)\n"
        "    except OSError:\n        pass\nos._exit(1)"
    )
    for code, error in (
        ("import os\nos.kill(os.getpid(), 40)", "killed by signal 40"),  # no name in Signals
        ("RECORD = b'[' * 60000 + b'\\n'\n" + write_all, "exited with code 1"),  # too deep
        ('RECORD = b\'{"error": "\\\\ud800"}\\n\'\n' + write_all, "?"),  # lone surrogate
    ):
        try:
            result = tool(code)
        except SandboxUnavailableError:
            pytest.skip("no Landlock here")
        assert not result.ok and result.error == error, result
    deep = tool(
        "import os\nfor i in range(1200):\n    os.mkdir('d')\n    os.chdir('d')\nos.getcwd()[:60]"
    )
    folder = ast.literal_eval(deep.text).split("/d/")[0]
    assert deep.ok and folder.startswith("/") and not os.path.exists(folder), deep


def test_disk_use_is_capped_by_the_working_folder():
    tool = PythonSandbox(timeout=10, max_disk_mb=8, max_file_mb=4, max_files=64)
    if tool.isolation()["filesystem"] != "namespace":
        pytest.skip("the disk cap is the namespace's tmpfs")
    for code in (
        "import itertools\nfor i in itertools.count():\n    open(f'f{i}', 'wb').write(b'x' * 2**20)",
        "import itertools\nfor i in itertools.count():\n    open(f'f{i}', 'w').close()",
    ):
        result = tool(code)
        assert not result.ok and "No space left on device" in result.error, result
    full = tool("import os\nsum(os.path.getsize(f) for f in os.listdir('.'))")
    assert full.ok and full.text == "0"  # and the next call starts empty


def test_without_kernel_file_isolation_the_sandbox_refuses_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.delenv(ALLOW_UNISOLATED_VARIABLE, raising=False)
    tmp_path.chmod(0o777)
    planted = tmp_path / "planted"
    code = f"open({str(planted)!r}, 'w').write('x')\n6 * 7"
    unisolated = PythonSandbox(timeout=3, filesystem="none", audit_hook=False)
    with pytest.raises(SandboxUnavailableError, match="allow_unisolated=True"):
        unisolated(code)
    assert not planted.exists()  # refused before any of the code ran
    allowed = PythonSandbox(timeout=3, filesystem="none", allow_unisolated=True)
    assert allowed.isolation()["filesystem"] == "none" and allowed("6 * 7").text == "42"
    monkeypatch.setenv(ALLOW_UNISOLATED_VARIABLE, "1")
    assert PythonSandbox(timeout=3, filesystem="none")("6 * 7").text == "42"


def test_audit_hook_looks_up_no_global_names():
    """Everything the hook uses is bound when it is made, so patching builtins cannot steer it."""
    tree = ast.parse(Path(sandbox_runner.__file__).read_text())
    (hook,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "hook"]
    local = {a.arg for a in hook.args.args + hook.args.kwonlyargs}
    body = ast.Module(body=hook.body, type_ignores=[])
    names = [n for n in ast.walk(body) if isinstance(n, ast.Name)]
    local |= {n.id for n in names if isinstance(n.ctx, ast.Store)}
    assert {n.id for n in names if isinstance(n.ctx, ast.Load)} <= local
    assert not any(
        isinstance(n, (ast.Lambda, ast.FunctionDef, ast.GeneratorExp)) for n in ast.walk(body)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(timeout=0),
        dict(timeout="2"),
        dict(memory_mb=-1),
        dict(cpu_seconds=1.5),
        dict(max_output_chars=True),
        dict(max_disk_mb=0),
        dict(max_files=-3),
        dict(filesystem="chroot"),
        dict(allow_unisolated="yes"),
    ],
)
def test_sandbox_refuses_bad_limits(kwargs):
    with pytest.raises(InvalidArgumentError, match=next(iter(kwargs))):
        PythonSandbox(**kwargs)


def test_calculator_refuses_bad_limits():
    with pytest.raises(InvalidArgumentError, match="max_digits"):
        Calculator(max_digits=0)


def test_the_per_call_benchmark_runs(capsys):
    from benchmarks import sandbox_call

    sandbox_call.main(["--calls", "2", "--modes", "auto", "none"])
    out = capsys.readouterr().out
    assert "auto: 2 calls of '1 + 1': median" in out and "none: 2 calls" in out

"""The agent's tools: the call syntax, the calculator, and the Python sandbox against hostile code.

Every hostile program must come back as an ``ok=False`` result with a short reason, leave
nothing behind outside its working folder, and leave the sandbox working for the next call.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import textgym
from textgym.errors import InvalidArgumentError
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
    result = sandbox(
        "import os, pathlib\n"
        "pathlib.Path('data.csv').write_text('a,b\\n1,2\\n')\n"
        "print(open('data.csv').read().split())\n"
        "os.getcwd()"
    )
    assert result.ok, result
    lines = result.text.split("\n")
    assert lines[0] == "['a,b', '1,2']"
    folder = ast.literal_eval(lines[1])
    assert not os.path.exists(folder)
    again = sandbox("import os\nos.listdir('.')")
    assert again.ok and again.text == "[]"


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
    ("pty", "import pty\npty.fork()", "blocked: new processes"),
    ("multiprocessing", "import multiprocessing as m\nm.Process(target=print).start()", "blocked"),
    ("huge allocation", "x = bytearray(10**10)", "memory limit (256 MB)"),
    ("growing list", "xs = []\nwhile True:\n    xs.append('a' * 10**6)", "memory limit"),
    ("big list", "xs = [0] * 10**9", "memory limit"),
    ("socket", "import socket\nsocket.create_connection(('1.1.1.1', 80))", "blocked: network"),
    ("raw socket", "import socket\nsocket.socket()", "blocked: network access"),
    ("dns", "import socket\nsocket.gethostbyname('example.com')", "blocked: network access"),
    ("urllib", "import urllib.request\nurllib.request.urlopen('http://x.org')", "blocked: network"),
    ("read /etc/passwd", "open('/etc/passwd').read()", "blocked: reading outside"),
    ("list /", "import os\nos.listdir('/')", "blocked: reading outside"),
    ("walk up", "open('../../../../etc/hostname').read()", "blocked: reading outside"),
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
    ("os._exit", "print('bye')\nimport os\nos._exit(0)", "exited with code 0 before finishing"),
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
    assert not result.ok and result.error.startswith("blocked: reading outside")


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
        "network_namespace",
        "user",
        "no_new_privileges",
        "seccomp",
        "audit_hook",
    }
    assert report["audit_hook"] is True and report["user"] in ("unprivileged", "nobody", "root")


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
    ],
)
def test_sandbox_refuses_bad_limits(kwargs):
    with pytest.raises(InvalidArgumentError, match=next(iter(kwargs))):
        PythonSandbox(**kwargs)


def test_calculator_refuses_bad_limits():
    with pytest.raises(InvalidArgumentError, match="max_digits"):
        Calculator(max_digits=0)

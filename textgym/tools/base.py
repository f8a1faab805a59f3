"""What every tool shares: the result type, the tool protocol and the call syntax.

A tool is a callable with a ``name`` and a one-line ``description`` (for prompts) that takes the
text of a call and returns a :class:`ToolResult`. A tool never raises on bad input: a bad call
is a result with ``ok=False`` whose ``text`` tells the agent what went wrong.

The call syntax is one XML-like tag per tool, named after the tool::

    <calc>2*(3+4)/5</calc>
    <python>
    xs = [3, 1, 2]
    sorted(xs)
    </python>

:func:`find_tool_call` finds the first call that is complete, that is the one whose closing tag
comes first; its argument starts after the nearest opening tag of the same name before it. An
opening tag without its closing tag is not a call (yet), so an environment can call
:func:`find_tool_call` after every token and run the tool as soon as the closing tag appears.
:func:`format_call` writes a call in the same syntax. :func:`check_limit` checks the tools'
limits (the environments' argument checks live above this package, in ``textgym.envs``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from textgym.errors import InvalidArgumentError

TOOL_NAMES = ("calc", "python")  # the built-in tools: Calculator and PythonSandbox


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call.

    ``text`` is what the agent sees (the value, the program's output, or the error explained);
    ``ok`` is False for a bad call or a failed run, and then ``error`` is a short reason such as
    ``"division by zero"`` or ``"timed out after 2.0 s"``; ``seconds`` is the wall time taken.
    """

    text: str
    ok: bool
    error: str | None = None
    seconds: float = 0.0


@runtime_checkable
class Tool(Protocol):
    """A tool an agent may call: ``tool(call_text) -> ToolResult``, never raising on bad input."""

    name: str
    description: str

    def __call__(self, call_text: str) -> ToolResult: ...


class ToolCall(NamedTuple):
    """A call found in text: the tool's name, the text between the tags, and the span
    ``(start, end)`` of the whole call (tags included) in the searched text."""

    name: str
    argument: str
    span: tuple[int, int]


def format_call(name: str, argument: str) -> str:
    """The text of a call to tool ``name`` with ``argument``: ``<name>argument</name>``."""
    return f"<{name}>{argument}</{name}>"


def find_tool_call(text: str, names: Iterable[str] = TOOL_NAMES) -> ToolCall | None:
    """The first complete call in ``text`` to one of the tools ``names``, or None.

    "First" means the call whose closing tag ends first; its argument is the text after the
    nearest opening tag of the same name before that closing tag, so a stray or unfinished
    opening tag earlier in the text does not swallow a later call. Closing tags with no opening
    tag before them are skipped. Tags are matched exactly (lower case, no spaces or attributes).
    """
    names = tuple(names)
    if not names:
        return None
    closing = re.compile("</(" + "|".join(re.escape(name) for name in names) + ")>")
    for match in closing.finditer(text):
        name = match.group(1)
        opening = f"<{name}>"
        start = text.rfind(opening, 0, match.start())
        if start >= 0:
            argument = text[start + len(opening) : match.start()]
            return ToolCall(name, argument, (start, match.end()))
    return None


def check_limit(name: str, value: Any, whole: bool = True) -> Any:
    """A tool's limit: a positive integer (or, with ``whole=False``, a positive number)."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        what = "a positive integer" if whole else "a positive number of seconds"
        raise InvalidArgumentError(f"{name} must be {what}, got {value!r:.60}")
    return value

"""Tools an agent may call between its turns: a calculator and a sandboxed Python interpreter.

:mod:`~textgym.tools.base` holds what every tool shares: :class:`ToolResult`, the :class:`Tool`
protocol (``tool.name``, ``tool.description``, ``tool(call_text) -> ToolResult``, never raising
on bad input) and the call syntax, ``<name>argument</name>``, with :func:`find_tool_call` and
:func:`format_call`. :class:`Calculator` (``calc``) does exact arithmetic parsed with ``ast``;
:class:`PythonSandbox` (``python``) runs code in a locked-down subprocess with limits, see
``docs/tools.md`` for what it does and does not guarantee.

>>> from textgym.tools import Calculator, find_tool_call
>>> call = find_tool_call("Let me compute <calc>2*(3+4)</calc>")
>>> Calculator()(call.argument).text
'14'
"""

from textgym.tools.base import TOOL_NAMES, Tool, ToolCall, ToolResult, find_tool_call, format_call
from textgym.tools.calculator import Calculator
from textgym.tools.python_sandbox import PythonSandbox

__all__ = [
    "TOOL_NAMES",
    "Calculator",
    "PythonSandbox",
    "Tool",
    "ToolCall",
    "ToolResult",
    "find_tool_call",
    "format_call",
]

"""The environments, one per file with its native vector twin beside it (``text_gen``,
``dialogue``, ``tool_use``), over the machinery they share (``core``: prompt encoding, scoring,
episode arrays; ``checks``: argument checks)."""

from textgym.envs.dialogue import DialogueEnv, DialogueVectorEnv
from textgym.envs.text_gen import TextGenEnv, TextGenVectorEnv
from textgym.envs.tool_use import ToolUseEnv, ToolUseVectorEnv

__all__ = [
    "DialogueEnv",
    "DialogueVectorEnv",
    "TextGenEnv",
    "TextGenVectorEnv",
    "ToolUseEnv",
    "ToolUseVectorEnv",
]

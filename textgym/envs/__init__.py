"""The environments. One environment per file, its native vector twin beside it."""

from textgym.envs.dialogue import DialogueEnv, DialogueVectorEnv
from textgym.envs.text_gen import TextGenEnv, TextGenVectorEnv

__all__ = ["DialogueEnv", "DialogueVectorEnv", "TextGenEnv", "TextGenVectorEnv"]

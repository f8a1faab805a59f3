"""The environments. One environment per file, its native vector twin beside it."""

from textgym.envs.text_gen import TextGenEnv, TextGenVectorEnv

__all__ = ["TextGenEnv", "TextGenVectorEnv"]

"""textgym: token-level text generation as Gymnasium environments.

``import textgym`` registers the environments with Gymnasium (Gymnasium 1.x has no plugin entry
points); ``gym.make("textgym:TextGen-v0")`` imports this module by itself.

    import gymnasium as gym, textgym
    env = gym.make("TextGen-v0")                    # one episode at a time
    envs = gym.make_vec("TextGen-v0", num_envs=64)  # the native TextGenVectorEnv

The modules, bottom to top: ``errors``, ``retry`` (retried calls, failed episodes),
``char_tokenizer``, ``models``, ``tasks`` (examples, prompt sets, tasks), ``rewards/``
(scorers), ``task_suite`` (the named tasks), ``envs/``, ``registry`` (the ids and their
documentation); this file re-exports the public names.
"""

from __future__ import annotations

from textgym.envs import TextGenEnv, TextGenVectorEnv
from textgym.errors import (
    CheckpointError,
    EmptyPromptSetError,
    InvalidArgumentError,
    InvalidTokenError,
    PromptTooLongError,
    ScorerError,
    ScorerTimeoutError,
    TextgymError,
)
from textgym.registry import describe, register_envs, registered_ids, summary
from textgym.retry import FaultCounts, RetryPolicy
from textgym.task_suite import TASKS, make_task
from textgym.tasks import Example, PromptSet, Task

__version__ = "0.1.0"

register_envs()

__all__ = [
    "CheckpointError",
    "EmptyPromptSetError",
    "Example",
    "FaultCounts",
    "InvalidArgumentError",
    "InvalidTokenError",
    "PromptSet",
    "PromptTooLongError",
    "RetryPolicy",
    "ScorerError",
    "ScorerTimeoutError",
    "TextgymError",
    "TASKS",
    "Task",
    "TextGenEnv",
    "TextGenVectorEnv",
    "describe",
    "summary",
    "make_task",
    "registered_ids",
]

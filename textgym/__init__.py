"""textgym: token-level text generation as Gymnasium environments.

``import textgym`` registers the environments with Gymnasium (Gymnasium 1.x has no plugin entry
points); ``gym.make("textgym:TextGen-v0")`` imports this module by itself.

    import gymnasium as gym, textgym
    env = gym.make("TextGen-v0")                    # one episode at a time
    envs = gym.make_vec("TextGen-v0", num_envs=64)  # the native TextGenVectorEnv
"""

from __future__ import annotations

import gymnasium as gym

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
from textgym.task_suite import describe, summary
from textgym.tasks import TASKS, Example, PromptSet, Task, make_task

__version__ = "0.1.0"

_ENVS = "textgym.envs.text_gen"

# id -> (single entry point, vector entry point, default kwargs)
_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "TextGen-v0": (f"{_ENVS}:TextGenEnv", f"{_ENVS}:TextGenVectorEnv", {}),
}

# The task suite: one TextGenEnv each, with the task's defaults. Every kwarg can be overridden in
# gym.make / gym.make_vec, and task_kwargs={...} reaches the task factory (textgym.describe(id)).
_LINE = ("\n",)  # one-line answers end at a newline
_SUITE: dict[str, dict] = {
    "TextGen-Sentiment-v0": {"task": "sentiment", "max_new_tokens": 32, "max_prompt_tokens": 64},
    "TextGen-Arithmetic-v0": {
        "task": "arithmetic",
        "max_new_tokens": 8,
        "max_prompt_tokens": 32,
        "stop_strings": _LINE,
    },
    "TextGen-Copy-v0": {
        "task": "copy",
        "tokenizer": "char",
        "max_new_tokens": 7,
        "max_prompt_tokens": 8,
    },
    "TextGen-Reverse-v0": {
        "task": "reverse",
        "tokenizer": "char",
        "max_new_tokens": 7,
        "max_prompt_tokens": 8,
    },
    "TextGen-Sort-v0": {
        "task": "sort",
        "tokenizer": "char",
        "max_new_tokens": 7,
        "max_prompt_tokens": 8,
    },
    "TextGen-Keywords-v0": {
        "task": "keywords",
        "max_new_tokens": 32,
        "max_prompt_tokens": 48,
        "stop_strings": _LINE,
    },
    "TextGen-Translate-v0": {
        "task": "translate",
        "max_new_tokens": 40,
        "max_prompt_tokens": 48,
        "stop_strings": _LINE,
    },
    "TextGen-Summarize-v0": {
        "task": "summarize",
        "max_new_tokens": 48,
        "max_prompt_tokens": 96,
        "stop_strings": _LINE,
    },
    "TextGen-QA-v0": {
        "task": "qa",
        "max_new_tokens": 16,
        "max_prompt_tokens": 96,
        "stop_strings": _LINE,
    },
}
for _id, _kwargs in _SUITE.items():
    _REGISTRY[_id] = (f"{_ENVS}:TextGenEnv", f"{_ENVS}:TextGenVectorEnv", _kwargs)

# Multi-turn dialogue games with a simulated partner (textgym.envs.dialogue).
_DIALOGUE = "textgym.envs.dialogue"
_REGISTRY["TextDialogue-GuessNumber-v0"] = (
    f"{_DIALOGUE}:DialogueEnv",
    f"{_DIALOGUE}:DialogueVectorEnv",
    {"game": "guess_number", "tokenizer": "char", "max_turns": 8},
)
_REGISTRY["TextDialogue-TwentyQuestions-v0"] = (
    f"{_DIALOGUE}:DialogueEnv",
    f"{_DIALOGUE}:DialogueVectorEnv",
    {
        "game": "twenty_questions",
        "tokenizer": "smollm2-135m",
        "max_turns": 20,
        "max_turn_tokens": 12,
    },
)


def _register() -> None:
    for env_id, (entry_point, vector_entry_point, kwargs) in _REGISTRY.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=entry_point,
                vector_entry_point=vector_entry_point,
                kwargs=kwargs,
                # Episodes end by themselves (EOS or max_new_tokens): no TimeLimit wrapper.
                disable_env_checker=False,
            )


def registered_ids() -> list[str]:
    """Every environment id textgym registers."""
    return sorted(_REGISTRY)


_register()

__all__ = [
    "CheckpointError",
    "EmptyPromptSetError",
    "Example",
    "InvalidArgumentError",
    "InvalidTokenError",
    "PromptSet",
    "PromptTooLongError",
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

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
from textgym.errors import EmptyPromptSetError, InvalidTokenError, PromptTooLongError, ScorerError
from textgym.tasks import Example, PromptSet, Task, make_task

__version__ = "0.1.0"

_ENVS = "textgym.envs.text_gen"

# id -> (single entry point, vector entry point, default kwargs)
_REGISTRY: dict[str, tuple[str, str, dict]] = {
    "TextGen-v0": (f"{_ENVS}:TextGenEnv", f"{_ENVS}:TextGenVectorEnv", {}),
}


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
    "EmptyPromptSetError",
    "Example",
    "InvalidTokenError",
    "PromptSet",
    "PromptTooLongError",
    "ScorerError",
    "Task",
    "TextGenEnv",
    "TextGenVectorEnv",
    "make_task",
    "registered_ids",
]

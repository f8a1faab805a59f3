"""What every textgym wrapper shares: reaching the TextGen env below it (:func:`text_env`) and
passing on what Gymnasium 1.x wrappers do not (:class:`Forwards`): ``action_masks()``, so
MaskablePPO and the learners keep the token mask through any stack of wrappers,
``control_points()``, so a generation engine finds where to hand control back, and a
curriculum's ``state_dict()`` / ``load_state_dict()``, so a learner's checkpoint records it."""

from __future__ import annotations

from typing import Any

import numpy as np

from textgym.envs import TextGenEnv, TextGenVectorEnv


def text_env(env: Any, vector: bool) -> Any:
    base = env.unwrapped
    expected = TextGenVectorEnv if vector else TextGenEnv
    if not isinstance(base, expected):
        raise TypeError(
            f"{'a vector' if vector else 'a single'} textgym environment ({expected.__name__}) "
            f"is needed, got {type(base).__name__}"
        )
    return base


def below(env: Any, name: str) -> Any:
    """``env``'s attribute ``name``, else that of the first env below it that has one (through
    Gymnasium's own wrappers, such as ``gym.make``'s ``OrderEnforcing``, which forward nothing);
    AttributeError when none has it."""
    while not hasattr(env, name):
        if not hasattr(env, "env"):
            raise AttributeError(f"{type(env).__name__} has no attribute {name!r}")
        env = env.env
    return getattr(env, name)


class Forwards:
    """What every wrapper here passes on from the env it wraps (Gymnasium 1.x wrappers forward
    no attributes): the action mask, and the state of a curriculum below the wrapper."""

    def action_masks(self) -> np.ndarray:
        """The wrapped env's action mask (``(V,)``; ``(num_envs, V)`` for a vector env): under
        the wrapper, MaskablePPO and the learners still mask the special tokens."""
        return below(self.env, "action_masks")()

    def control_points(self) -> Any:
        """The wrapped env's control points (where a generation engine hands control back;
        see :mod:`textgym.envs.control_points`): the wrappers here change rewards, observations
        or the task between episodes, never where an episode ends or the env acts."""
        return below(self.env, "control_points")()

    @property
    def state_dict(self) -> Any:
        """The wrapped env's ``state_dict`` (a curriculum's below this wrapper); absent
        (``hasattr`` is False) when no env below has one."""
        return below(self.env, "state_dict")

    @property
    def load_state_dict(self) -> Any:
        """The wrapped env's ``load_state_dict``; absent when no env below has one."""
        return below(self.env, "load_state_dict")

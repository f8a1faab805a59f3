"""GEM environments from textgym ids: ``gem.make("textgym:TextGen-Arithmetic-v0")``.

GEM (the ``gem-llm`` package, ``import gem``) runs text environments for LLM agents:
``reset(seed)`` returns the task text, ``step(action)`` the environment's answer to the action,
its reward and the end flags. :class:`GemEnv` is
:class:`~textgym.integrations.text_env.TextEnvAdapter` as a ``gem.Env``, with the ``info``
keys GEM's wrappers read. Importing this module registers every textgym id with GEM as
``"textgym:<id>"`` (GEM ids are namespaced the same way: ``"game:GuessTheNumber-v0-easy"``);
:func:`register` adds other Gymnasium ids. This module imports ``gem``;
:mod:`textgym.integrations.text_env` does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import gem
import gymnasium as gym
from gem.envs.registration import ENV_REGISTRY

from textgym.errors import InvalidArgumentError
from textgym.integrations.text_env import TextEnvAdapter
from textgym.registry import registered_ids

PREFIX = "textgym:"  # a textgym id's GEM id is PREFIX + id


class GemEnv(TextEnvAdapter, gem.Env):
    """A textgym id as a ``gem.Env``: :class:`TextEnvAdapter` plus GEM's conventions.

    Observations, actions, rewards and ``info`` are :class:`TextEnvAdapter`'s, with two keys
    GEM's wrappers read (``gem.wrappers.observation_wrapper.ObservationWrapper`` builds the
    agent's history from them):

    * ``use_tool``: True when the observation is tool results (a ``TextTools-*`` id);
    * ``parsed_action``: the part of the turn the environment used, decoded, present when some
      of its tokens were not (a dialogue turn ends at its end-of-turn text, an episode at its
      answer line or EOS).

    ``seed`` seeds the first ``reset`` that is given no seed of its own (``gem.make_vec``
    passes each environment ``seed + index``); ``env_kwargs`` are ``gym.make``'s. Unlike GEM's
    own environments, ``reset(seed)`` does not seed Python's and NumPy's global generators:
    the textgym environment has its own.
    """

    def __init__(self, env_id: str, seed: int | None = None, **env_kwargs: Any):
        super().__init__(env_id, **env_kwargs)
        self._first_seed = seed

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        observation, info = super().reset(
            seed=self._first_seed if seed is None else seed, options=options
        )
        self._first_seed = None  # the later resets go on from the generator
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = super().step(action)
        info["use_tool"] = self.env_role == "tool" and observation != ""
        if info["unused_tokens"]:
            used = info["turn_ids"][: len(info["turn_ids"]) - info["unused_tokens"]]
            info["parsed_action"] = self.tokenizer.decode(used, skip_special_tokens=True)
        return observation, reward, terminated, truncated, info

    def sample_random_action(self) -> str:
        """A random turn from the text action space (characters the tokenizer knows)."""
        return self.env.action_space.sample()


def register(env_ids: Iterable[str] | None = None) -> list[str]:
    """Register ``env_ids`` (default: every textgym id) with GEM as ``PREFIX + id``.

    ``gem.make(PREFIX + id, **env_kwargs)`` then gives a :class:`GemEnv`. An id GEM already
    has is left as it is. Returns the GEM ids; raises
    :class:`~textgym.errors.InvalidArgumentError` for a single string (pass a list of ids) or an
    id Gymnasium does not know, before registering any of them.
    """
    if isinstance(env_ids, (str, bytes)) or not isinstance(env_ids, (Iterable, type(None))):
        raise InvalidArgumentError(
            f"env_ids must be a list of Gymnasium ids (or None: every textgym id), got "
            f"{type(env_ids).__name__} {env_ids!r:.60}; pass e.g. register([{env_ids!r:.40}])"
        )
    env_ids = registered_ids() if env_ids is None else list(env_ids)
    for env_id in env_ids:  # all checked first: a rejected call registers nothing
        if not isinstance(env_id, str) or env_id not in gym.registry:
            raise InvalidArgumentError(
                f"{env_id!r:.60} is not a registered Gymnasium id; see textgym.registered_ids()"
            )
    names = []
    for env_id in env_ids:
        name = PREFIX + env_id
        if name not in ENV_REGISTRY:
            gem.register(name, partial(GemEnv, env_id))  # its kwargs would clash with env_id
        names.append(name)
    return names


register()

__all__ = ["PREFIX", "GemEnv", "register"]

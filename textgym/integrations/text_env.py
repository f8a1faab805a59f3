"""Any textgym id behind a plain text interface, with its episode as chat messages.

Text-level agent frameworks (GEM, verifiers, OpenEnv and the clients written for them) talk to
an environment in text: ``reset`` gives the task, ``step(text)`` takes the agent's turn and
gives back what the environment says to it, a reward and the end flags. :class:`TextEnvAdapter`
serves every textgym id that way. It runs on :class:`~textgym.turns.TextTurns`, so the token
accounting stays exact: ``info`` carries the episode's token ids (the token environment's own),
the mask of the agent's tokens, the per-turn rewards and the environment's own keys (``score``,
``outcome`` of the verifiable tasks, ``solved`` of the dialogue games, ``tool_calls``).
:meth:`TextEnvAdapter.messages` is the episode as OpenAI-style role/content messages.

:mod:`textgym.integrations.gem` builds GEM environments on this class; nothing here needs a
library beyond textgym's own.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import gymnasium as gym

from textgym.envs import ToolUseEnv
from textgym.errors import ResetNeeded
from textgym.turns import TextTurns


class TextEnvAdapter:
    """A textgym id as a text environment: turns of text in, text and rewards out.

    ## Description

    ``TextEnvAdapter(env_id, **env_kwargs)`` makes ``TextTurns(gym.make(env_id,
    **env_kwargs))`` and speaks for it in the shape text-level frameworks use:
    ``reset(seed=None, options=None) -> (observation, info)`` and
    ``step(text) -> (observation, reward, terminated, truncated, info)``, every observation a
    ``str``. The underlying wrapper is ``adapter.env`` (its ``unwrapped`` is the token
    environment).

    ## Observations

    ``reset`` returns the prompt (a dialogue game: its opening). ``step`` returns the text the
    environment wrote during the turn, the runs of its tokens after the agent's joined in
    order: a dialogue partner's reply, or the tool results (``<result>...</result>`` and a
    newline) of the calls the turn completed; ``""`` where it wrote nothing (a ``TextGen-*``
    id, where the whole episode is the agent's completion, or a tool turn without a call).
    Each run is decoded on its own, special tokens skipped.

    ## Actions

    A ``str``: one turn, as :class:`~textgym.turns.TextTurns` takes it. It is tokenized once
    with the environment's tokenizer and stepped token by token until it runs out, the episode
    ends, or (a dialogue) the agent's turn ends; ``info["unused_tokens"]`` counts the tokens
    not stepped. A turn that contains ``adapter.eos_text`` ends the episode there. A
    non-string, an empty turn and text the tokenizer cannot encode raise
    :class:`~textgym.errors.InvalidArgumentError` before anything changes; ``step`` before
    ``reset`` or after the end raises ``gymnasium.error.ResetNeeded``.

    ## Rewards and Episode End

    :class:`~textgym.turns.TextTurns`': the turn's reward is the sum of the token
    environment's rewards over the turn's steps (the task's score on the last turn by
    default), and ``terminated``/``truncated`` are the token environment's.

    ## Info

    :class:`~textgym.turns.TextTurns`' info: ``token_ids`` (the whole episode, the token
    environment's ids without padding), ``agent_mask`` (1 for the agent's tokens),
    ``turn_rewards``, ``turn_ids``, ``unused_tokens``, at the end ``turn_returns``, and the
    token environment's keys (at the end ``completion``, ``score``, and where the id has them
    ``outcome``, ``solved``, ``tool_calls``).

    ## Messages

    :meth:`messages`: the prompt as ``user``, then one message per run of tokens: the agent's
    as ``assistant``, the environment's as ``user`` (a dialogue partner) or ``tool`` (tool
    results, ``adapter.env_role``). A turn that leaves a dialogue turn open and the turn
    that finishes it form one ``assistant`` message, as they form one run of tokens.

    ## Arguments

    * ``env_id``: any id of ``textgym.registered_ids()`` (or another id whose environment is a
      single textgym token environment).
    * ``env_kwargs``: ``gym.make``'s keyword arguments for the id.
    """

    def __init__(self, env_id: str, **env_kwargs: Any):
        self.env = TextTurns(gym.make(env_id, **env_kwargs))
        base = self.env.unwrapped
        self.tokenizer = base.tokenizer
        # Who writes the environment's tokens after the prompt: tools, or a dialogue partner.
        self.env_role = "tool" if isinstance(base, ToolUseEnv) else "user"
        self._prompt: str | None = None  # None before the first reset
        self._prompt_length = 0  # the prompt's tokens at the start of token_ids
        self._token_ids: list[int] = []
        self._agent_mask: list[int] = []

    @property
    def eos_text(self) -> str | None:
        """The tokenizer's EOS text: a turn that contains it ends the episode there."""
        return self.env.eos_text

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._prompt = observation
        self._token_ids, self._agent_mask = info["token_ids"], info["agent_mask"]
        self._prompt_length = len(self._token_ids)
        return observation, info

    def step(self, text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(text)  # raises before any change
        start = len(self._token_ids)
        self._token_ids, self._agent_mask = info["token_ids"], info["agent_mask"]
        written = [content for role, content in self._runs(start) if role != "assistant"]
        return "".join(written), reward, terminated, truncated, info

    def messages(self) -> list[dict[str, str]]:
        """The episode so far as OpenAI-style ``{"role", "content"}`` messages (see Messages)."""
        if self._prompt is None:
            raise ResetNeeded("call reset() before messages()")
        runs = self._runs(self._prompt_length)
        return [{"role": "user", "content": self._prompt}] + [
            {"role": role, "content": content} for role, content in runs
        ]

    def close(self) -> None:
        self.env.close()

    def _runs(self, start: int) -> list[tuple[str, str]]:
        """``(role, text)`` of each run of the agent's or the environment's tokens from token
        ``start`` on, each run decoded on its own with special tokens skipped."""
        pairs = zip(self._token_ids[start:], self._agent_mask[start:])
        out = []
        for agent, run in groupby(pairs, key=lambda pair: pair[1]):
            ids = [token for token, _ in run]
            role = "assistant" if agent else self.env_role
            out.append((role, self.tokenizer.decode(ids, skip_special_tokens=True)))
        return out


__all__ = ["TextEnvAdapter"]

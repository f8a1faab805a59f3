"""The observation as text: :class:`TextObservation`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from textgym.wrappers.base import Forwards, text_env


class TextObservation(Forwards, gym.ObservationWrapper):
    """The observation is the text: ``prompt + completion so far`` (decoded, cut at a stop
    string), for agents that work on strings (e.g. prompting an API model).

    ``observation_space`` is a ``gymnasium.spaces.Text`` whose charset holds every character
    the tokenizer can produce; the token arrays stay available in ``env.unwrapped``.
    """

    def __init__(self, env: gym.Env, separator: str = ""):
        super().__init__(env)
        base = text_env(env, vector=False)
        self._base = base
        self.separator = separator
        tok = base.core.tokenizer
        pieces = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=True)
        charset = set("".join(pieces)) | set(separator)
        for split in ("train", "test"):
            charset |= set("".join(e.prompt for e in base.core.prompts.splits[split]))
        longest = max(len(p) for p in pieces) if pieces else 1
        self.observation_space = spaces.Text(
            max_length=10 * base.core.max_prompt_tokens + longest * base.core.max_new_tokens,
            min_length=0,
            charset=frozenset(charset),
        )

    def observation(self, observation: Any) -> str:
        examples, texts = self._base.current_completions()
        return examples[0].prompt + self.separator + texts[0]

"""The episode arrays of the TextGen environments.

:class:`Episodes` keeps ``n`` episode slots in fixed-shape numpy arrays (prompt ids left-padded
in ``[0, P)``, generated ids from ``P`` on). The single environment is this with one slot, the
vector environment with ``num_envs``, which is what makes ``N`` single environments and one
vector environment of ``N`` slots produce identical data. The dialogue and tool-use
environments extend it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from textgym.envs.core import TextGenCore, prompt_mask
from textgym.retry import FaultCounts
from textgym.tasks import Example


class Episodes:
    """``n`` episode slots: prompt ids left-padded in ``[0, P)``, generated ids from ``P`` on."""

    def __init__(self, core: TextGenCore, n: int):
        context = core.max_prompt_tokens + core.max_new_tokens
        self.input_ids = np.full((n, context), core.pad_id, dtype=np.int64)
        self.attention_mask = np.zeros((n, context), dtype=np.int64)
        self.num_generated = np.zeros(n, dtype=np.int64)
        self.potential = np.zeros(n, dtype=np.float64)  # last dense-reward potential
        self.examples: list[Example | None] = [None] * n
        self.prompt_index = np.full(n, -1, dtype=np.int64)
        self.split: list[str] = ["train"] * n
        self.completion: list[str | None] = [None] * n
        self.outcome: list[str | None] = [None] * n  # the checker's label, if it gives one
        self.reports_outcomes = core.reports_outcomes
        self.score = np.zeros(n, dtype=np.float64)
        # on_failure="end_episode": why an episode ended as failed (None: it did not), and the
        # counts of the env's calls (not part of a snapshot: a rolled-back step still happened)
        self.failure: list[str | None] = [None] * n
        self.reports_failures = core.on_failure == "end_episode"
        self.fault_counts = FaultCounts()

    def start(
        self, core: TextGenCore, slots: np.ndarray, rows: np.ndarray, examples: list[Example]
    ) -> None:
        """Put new prompts (``rows``: left-padded ids) into ``slots`` and clear the rest."""
        budget = core.max_prompt_tokens
        self.input_ids[slots, :budget] = rows
        self.input_ids[slots, budget:] = core.pad_id
        self.attention_mask[slots, :budget] = prompt_mask(rows, core.pad_id)
        self.attention_mask[slots, budget:] = 0
        self.num_generated[slots] = 0
        self.potential[slots] = 0.0
        self.score[slots] = 0.0
        for s, e in zip(slots.tolist(), examples):
            self.examples[s] = e
            self.completion[s] = None
            self.outcome[s] = None
            self.failure[s] = None

    def observation(self, slots: np.ndarray | slice, copy: bool = True) -> dict[str, np.ndarray]:
        obs = {
            "input_ids": self.input_ids[slots],
            "attention_mask": self.attention_mask[slots],
            "num_generated": self.num_generated[slots, None],
        }
        return {k: v.copy() for k, v in obs.items()} if copy else obs

    def append(self, core: TextGenCore, slots: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Write one token per slot after its last one; returns the indices written."""
        position = core.max_prompt_tokens + self.num_generated[slots]
        self.input_ids[slots, position] = tokens
        self.attention_mask[slots, position] = 1
        self.num_generated[slots] += 1
        return position

    def unappend(self, core: TextGenCore, slots: np.ndarray, position: np.ndarray) -> None:
        """Undo :meth:`append` (a step whose scorer or partner failed changes nothing)."""
        self.input_ids[slots, position] = core.pad_id
        self.attention_mask[slots, position] = 0
        self.num_generated[slots] -= 1

    #: per-slot arrays a snapshot copies (subclasses add theirs)
    _SLOT_ARRAYS: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "num_generated",
        "potential",
        "score",
        "prompt_index",
    )
    _SLOT_LISTS = ("examples", "split", "completion", "outcome", "failure")

    def snapshot(self, slots: np.ndarray) -> dict[str, Any]:
        """A copy of ``slots``' state, for :meth:`restore` if a step fails half-way."""
        snap = {name: getattr(self, name)[slots].copy() for name in self._SLOT_ARRAYS}
        for name in self._SLOT_LISTS:
            values = getattr(self, name)
            snap[name] = [values[s] for s in slots.tolist()]
        snap["slots"] = slots.copy()
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot`, in place (observation views stay valid)."""
        slots = snap["slots"]
        for name in self._SLOT_ARRAYS:
            getattr(self, name)[slots] = snap[name]
        for name in self._SLOT_LISTS:
            values = getattr(self, name)
            for s, v in zip(slots.tolist(), snap[name]):
                values[s] = v

    def step(
        self, core: TextGenCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Append ``tokens`` to ``slots``; returns (rewards, terminated, truncated) for them.
        If the scorer fails, the tokens are taken back: the state is as before the call."""
        position = self.append(core, slots, tokens)
        try:
            return self._finish_step(core, slots, tokens)
        except BaseException:
            self.unappend(core, slots, position)
            raise

    def _finish_step(
        self, core: TextGenCore, slots: np.ndarray, tokens: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terminated = np.zeros(len(slots), dtype=bool)
        if core.eos_id is not None:
            terminated |= tokens == core.eos_id
        if core.stop_strings:
            terminated |= core.hit_stop_string(self, slots, tokens)
        truncated = ~terminated & (self.num_generated[slots] >= core.max_new_tokens)
        done = terminated | truncated

        rewards = np.zeros(len(slots), dtype=np.float64)
        # Sparse: the score once, at the end. Dense: the change of the potential
        # phi_t = score(completion so far), phi_0 = 0, so the rewards sum to the final score.
        scored = np.arange(len(slots)) if core.reward_mode == "dense" else np.flatnonzero(done)
        if scored.size:
            texts, scores, outcomes, failures = core.score(self, slots[scored])  # may raise
            ok = np.array([f is None for f in failures])
            potential = scores.astype(np.float64)
            rewards[scored[ok]] = potential[ok] - self.potential[slots[scored[ok]]]
            self.potential[slots[scored[ok]]] = potential[ok]
            for k, i in enumerate(scored.tolist()):
                if failures[k] is not None:
                    self.end_failed(slots[i], texts[k], failures[k])
                    terminated[i], truncated[i] = False, True
                elif done[i]:
                    self.completion[slots[i]] = texts[k]
                    self.score[slots[i]] = potential[k]
                    if outcomes is not None:
                        self.outcome[slots[i]] = outcomes[k]
        return rewards, terminated, truncated

    def end_failed(self, slot: int, text: str, failure: str) -> None:
        """End ``slot``'s episode as failed (``on_failure="end_episode"``): a call it needed
        still failed after its retries. Its text so far is kept, its score is NaN (none), and
        the caller reports it truncated with a reward of 0.0, a placeholder."""
        self.completion[slot] = text
        self.score[slot] = np.nan
        self.failure[slot] = failure
        self.fault_counts.failed_episodes += 1

    def reset_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        return {
            "prompt": [self.examples[s].prompt for s in slots],
            "prompt_index": self.prompt_index[slots].tolist(),
            "split": [self.split[s] for s in slots],
        }

    def final_info(self, slots: np.ndarray) -> dict[str, list[Any]]:
        info = {
            "prompt": [self.examples[s].prompt for s in slots],
            "completion": [self.completion[s] for s in slots],
            "score": self.score[slots].tolist(),
            "num_tokens": self.num_generated[slots].tolist(),
        }
        if self.reports_outcomes:
            info["outcome"] = [self.outcome[s] for s in slots]
        if self.reports_failures:
            info["failed"] = [self.failure[s] is not None for s in slots]
            info["failure"] = [self.failure[s] for s in slots]
        return info

    def render(self, core: TextGenCore, slot: int) -> str:
        if self.examples[slot] is None:
            return "(not reset yet)"
        text = self.completion[slot]
        if text is None:
            text = core.completions(self, np.array([slot]))[0]
            status = f"{self.num_generated[slot]}/{core.max_new_tokens} tokens"
        elif self.failure[slot] is not None:
            status = f"failed: {self.failure[slot]}"
        else:
            status = f"done, score {self.score[slot]:.4f}"
        return f"prompt:     {self.examples[slot].prompt}\ncompletion: {text}\n[{status}]\n"


class MaskedEpisodes(Episodes):
    """Episodes in which the environment writes tokens too (a partner's replies, tool results):
    ``agent_mask`` marks the agent's own tokens and is part of the observation."""

    _SLOT_ARRAYS = (*Episodes._SLOT_ARRAYS, "agent_mask")

    def __init__(self, core: TextGenCore, n: int):
        super().__init__(core, n)
        self.agent_mask = np.zeros_like(self.attention_mask)

    def start(
        self, core: TextGenCore, slots: np.ndarray, rows: np.ndarray, examples: list[Example]
    ) -> None:
        super().start(core, slots, rows, examples)
        self.agent_mask[slots] = 0

    def observation(self, slots: np.ndarray | slice, copy: bool = True) -> dict[str, np.ndarray]:
        obs = super().observation(slots, copy)
        obs["agent_mask"] = self.agent_mask[slots].copy() if copy else self.agent_mask[slots]
        return obs

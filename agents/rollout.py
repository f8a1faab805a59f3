"""Rollouts: one episode per slot of a textgym vector env, collected through ``env.step``.

A rollout is the env-API equivalent of one batched ``generate`` call: reset all slots together
(per-slot seeds; a GRPO/RLOO group gives its slots one seed, hence one prompt), then step until
every slot has finished one episode. Finished slots keep being stepped with their outputs ignored,
exactly as ``generate`` keeps computing finished rows, so the policy's KV cache stays one plain
batch. A :class:`RolloutBuffer` records what the update needs on the way (the chosen tokens,
their log-probs at acting time, the env's rewards, each episode's text and outcome) and turns it
into a :class:`Rollout`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from agents.engines import Engine, EngineStep, PerTokenEngine, engine_steps
from agents.policy import ActOutput, LMPolicy

LOGGED_INFO_KEYS = ("curriculum_level", "success_rate")
"""Numeric info keys a rollout averages (over the reset and every step, over the slots that
report them) into :attr:`Rollout.info_means`, which the learners log: a curriculum wrapper's
level and success rate (``textgym.wrappers.VectorCurriculum``). An env that reports none of them
adds no columns."""


@dataclass
class Rollout:
    """One episode per env slot. Token-level tensors are ``(N, T)``, ``T = max_new_tokens``;
    position ``t`` is observation index ``P + t``."""

    input_ids: torch.Tensor  # (N, P + T) prompt (left-padded) + completion (right-padded), long
    attention_mask: torch.Tensor  # (N, P + T)
    prompt_len: int  # P
    mask: torch.Tensor  # (N, T) bool: the agent chose token t (a dialogue's partner tokens: no)
    # (N, T) the sampled tokens' log-probs as the acting path computed them. The update does not
    # train on them: it recomputes its own (agents.update.recompute); they measure the gap.
    acting_logprobs: torch.Tensor
    rewards: torch.Tensor  # (N, T) env rewards (sparse: the score on the last token)
    episode_returns: torch.Tensor  # (N,) each episode's return: the sum of its rewards
    prompts: list[str]
    completions: list[str]
    seconds: float  # wall time of the collection
    # (N,) a verifiable task's label of each episode, from its final ``info["outcome"]``
    # ("correct", "partial", "wrong", "format_error"); None when the env reports no outcomes.
    outcomes: list[str | None] | None = None
    # (N, T, ceil(V / 8)) uint8: packed sets each action's distribution was restricted to, when the
    # acting policy restricts it (NLPO); the update scores the same distributions.
    support: torch.Tensor | None = None
    # The means of the infos named in LOGGED_INFO_KEYS (None: the env reports none of them).
    info_means: dict[str, float] | None = None
    # (N,) bool: the episode failed (a scorer, partner or tool call still failed after the env's
    # retries: ``info["failed"]``, ``on_failure="end_episode"``). Its reward is a placeholder, not
    # a score: learners leave such episodes out (agents.base.Learner.train_iteration).
    failed: torch.Tensor | None = None
    # (N,) why each failed episode failed (``info["failure"]``), None for the others.
    failures: list[str | None] | None = None

    @property
    def num_envs(self) -> int:
        return self.input_ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())

    def to(self, device: torch.device | str) -> Rollout:
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
            for f in fields(self)
        }
        return Rollout(**moved)

    def subset(self, rows: torch.Tensor) -> Rollout:
        """The episodes ``rows`` (a 1-D index tensor), in that order."""
        index = rows.tolist()
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value[rows]
            elif isinstance(value, list):
                value = [value[i] for i in index]
            picked[f.name] = value
        return Rollout(**picked)


def cat_rollouts(rollouts: list[Rollout]) -> Rollout:
    """Several rollouts of the same env as one (episodes stacked; seconds added)."""
    if len(rollouts) == 1:
        return rollouts[0]
    out = {}
    for f in fields(Rollout):
        values = [getattr(r, f.name) for r in rollouts]
        if f.name == "prompt_len":
            out[f.name] = values[0]
        elif f.name == "seconds":
            out[f.name] = sum(values)
        elif f.name == "info_means":
            means = [v for v in values if v]
            keys = dict.fromkeys(k for v in means for k in v)
            out[f.name] = {k: _finite_mean([v[k] for v in means if k in v]) for k in keys} or None
        elif f.name == "outcomes":  # labels of envs that report them; None for the others
            labelled = [
                v if v is not None else [None] * r.num_envs for v, r in zip(values, rollouts)
            ]
            out[f.name] = None if all(v is None for v in values) else sum(labelled, [])
        elif isinstance(values[0], list):
            out[f.name] = [x for v in values for x in v]
        elif values[0] is None:
            out[f.name] = None
        else:
            out[f.name] = torch.cat(values)
    return Rollout(**out)


def _finite_mean(values: Any) -> float:
    """The mean of the finite entries of ``values`` (NaN when there are none)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


class RolloutBuffer:
    """What a rollout records while the env steps, one row per slot; :meth:`rollout` turns it
    into a :class:`Rollout`.

    Token-level arrays are indexed by where each action lands after ``P`` (the observation's
    ``num_generated`` before the step): step ``t`` in TextGen, later in a dialogue, where the
    partner's replies sit in between. A dialogue's sequences (agent and partner tokens) come from
    each episode's final observation (``finals``), its action positions from ``agent_mask``.
    """

    def __init__(self, obs: dict[str, np.ndarray], infos: dict[str, Any], horizon: int):
        n, length = obs["input_ids"].shape
        self.horizon, self.prompt_len = horizon, length - horizon
        self.prompts = [str(p) for p in infos["prompt"]] if "prompt" in infos else [""] * n
        self.prompt_ids = torch.from_numpy(obs["input_ids"][:, : self.prompt_len].copy())
        self.prompt_mask = torch.from_numpy(obs["attention_mask"][:, : self.prompt_len].copy())
        self.tokens = np.zeros((n, horizon), dtype=np.int64)  # the chosen tokens
        self.rewards = np.zeros((n, horizon), dtype=np.float32)
        self.acting_logprobs = torch.zeros(n, horizon)
        self.support: torch.Tensor | None = None  # (N, T, ceil(V / 8)), if the policy has them
        self.lengths = np.zeros(n, dtype=np.int64)  # actions taken per episode
        self.done = np.zeros(n, dtype=bool)  # the slot's episode has ended
        self.completions = [""] * n
        self.outcomes: list[str | None] = [None] * n
        self.failures: list[str | None] = [None] * n  # info["failure"] of failed episodes
        self.info_values: dict[str, list[np.ndarray]] = {}  # LOGGED_INFO_KEYS' values seen
        self.finals = (  # dialogues: each episode's final observation
            {k: obs[k].copy() for k in ("input_ids", "attention_mask", "agent_mask")}
            if "agent_mask" in obs
            else None
        )
        self.add_infos(infos)

    def add_infos(self, infos: dict[str, Any]) -> None:
        """Keep the values of :data:`LOGGED_INFO_KEYS` in a vector ``infos``."""
        for key in LOGGED_INFO_KEYS:
            if key not in infos:
                continue
            values = np.atleast_1d(np.asarray(infos[key]))
            if "_" + key in infos:
                values = values[np.asarray(infos["_" + key], dtype=bool)]
            if values.size and np.issubdtype(values.dtype, np.number):
                self.info_values.setdefault(key, []).append(values.astype(np.float64))

    def record(
        self,
        at: np.ndarray,
        out: ActOutput | EngineStep,
        obs: dict[str, np.ndarray],
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> None:
        """One env step: the actions ``out`` landed at positions ``at``; the rest is what
        ``envs.step`` returned. Slots whose episode had already ended are ignored."""
        self.add_infos(infos)
        live = ~self.done
        rows = np.flatnonzero(live)
        self.tokens[rows, at[rows]] = out.actions[rows]
        self.rewards[rows, at[rows]] = reward[rows]
        rows_t, at_t = torch.from_numpy(rows), torch.from_numpy(at[rows])
        self.acting_logprobs[rows_t, at_t] = out.logprobs.float().cpu()[rows_t]
        if out.support is not None:
            if self.support is None:
                shape = (*self.tokens.shape, out.support.shape[-1])
                self.support = torch.zeros(shape, dtype=torch.uint8)
            self.support[rows_t, at_t] = out.support.cpu()[rows_t]
        self.lengths[live] += 1
        finished = live & (terminated | truncated)
        if finished.any():
            self._finish(finished, obs, infos)
        self.done |= finished

    def _finish(self, finished: np.ndarray, obs: dict[str, np.ndarray], infos: dict) -> None:
        final = infos.get("final_info", infos)  # SAME_STEP autoreset nests it
        if "completion" in final:
            for i in np.flatnonzero(finished & final["_completion"]).tolist():
                self.completions[i] = str(final["completion"][i])
        if "outcome" in final:
            for i in np.flatnonzero(finished & final["_outcome"]).tolist():
                self.outcomes[i] = str(final["outcome"][i])
        if "failed" in final:
            for i in np.flatnonzero(finished & final["_failed"]).tolist():
                if bool(final["failed"][i]):
                    reason = final["failure"][i] if "failure" in final else None
                    self.failures[i] = str(reason) if reason is not None else "failed"
        if self.finals is not None:  # NEXT_STEP: obs is the final one; SAME_STEP: final_obs
            final_obs = infos.get("final_obs")
            for i in np.flatnonzero(finished).tolist():
                last = None if final_obs is None else final_obs[i]
                for key, array in self.finals.items():
                    array[i] = obs[key][i] if last is None else last[key]

    def rollout(self, seconds: float) -> Rollout:
        if not self.done.all():
            raise RuntimeError(
                f"{int((~self.done).sum())} episode(s) did not end within "
                f"max_new_tokens={self.horizon} steps"
            )
        p = self.prompt_len
        if self.finals is not None:  # only the agent's positions are actions
            mask = torch.from_numpy(self.finals["agent_mask"][:, p:].astype(bool))
            input_ids = torch.from_numpy(self.finals["input_ids"])
            attention_mask = torch.from_numpy(self.finals["attention_mask"])
        else:
            mask = torch.arange(self.horizon)[None, :] < torch.from_numpy(self.lengths)[:, None]
            completion_ids = torch.from_numpy(self.tokens).masked_fill_(~mask, 0)
            input_ids = torch.cat([self.prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([self.prompt_mask, mask.long()], dim=1)
        outcomes = self.outcomes if any(o is not None for o in self.outcomes) else None
        info_means = {k: _finite_mean(np.concatenate(v)) for k, v in self.info_values.items()}
        return Rollout(
            input_ids=input_ids,
            attention_mask=attention_mask,
            prompt_len=p,
            mask=mask,
            acting_logprobs=self.acting_logprobs * mask,
            rewards=torch.from_numpy(self.rewards),
            episode_returns=torch.from_numpy(self.rewards.sum(1)),
            prompts=self.prompts,
            completions=self.completions,
            seconds=seconds,
            outcomes=outcomes,
            support=self.support,
            info_means=info_means or None,
            failed=torch.tensor([f is not None for f in self.failures]),
            failures=self.failures,
        )


def _max_new_tokens(envs: Any, length: int) -> int:
    space = envs.single_observation_space["num_generated"]
    return int(np.asarray(space.high).reshape(-1)[0]) if space is not None else length


@torch.no_grad()
def collect_rollout(
    policy: LMPolicy,
    envs: Any,
    *,
    seeds: Sequence[int | None] | None = None,
    split: str | None = None,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    engine: Engine | None = None,
) -> Rollout:
    """Run one episode in every slot of a textgym vector env with ``policy``; see module doc.

    ``seeds``: one per slot for ``envs.reset`` (equal seeds give equal prompts); ``split``: passed
    as ``reset(options={"split": ...})``; ``generator``: the torch RNG for sampling; ``engine``:
    what proposes the tokens (:mod:`agents.engines`, e.g. ``VLLMEngine(policy)``), each chunk up
    to the env's next control point; default ``PerTokenEngine(policy)``, ``policy.act`` one
    token per step.
    """
    t0 = time.perf_counter()
    options = {"split": split} if split is not None else None
    obs, infos = envs.reset(seed=None if seeds is None else list(seeds), options=options)
    buffer = RolloutBuffer(obs, infos, _max_new_tokens(envs, obs["input_ids"].shape[1]))
    action_mask = envs.action_masks() if hasattr(envs, "action_masks") else None
    engine = PerTokenEngine(policy) if engine is None else engine
    engine.reset()
    # One autocast region for the whole rollout: autocast caches the bf16 copies of the weights
    # until its outermost region exits, so they are cast once per rollout, not once per step.
    with policy.autocast():
        for step in engine_steps(
            engine,
            envs,
            obs,
            action_mask=action_mask,
            deterministic=deterministic,
            generator=generator,
        ):
            # step.at: where the actions land after P (TextGen: the step's index)
            buffer.record(
                step.at, step, step.obs, step.rewards, step.terminated, step.truncated, step.infos
            )
    return buffer.rollout(time.perf_counter() - t0)

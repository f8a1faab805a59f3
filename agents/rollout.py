"""Rollouts through the vector env, and the advantage estimators the learners share.

A rollout is the env-API equivalent of one batched ``generate`` call: reset all slots together
(per-slot seeds; a GRPO/RLOO group gives its slots one seed, hence one prompt), then step until
every slot has finished one episode. Finished slots keep being stepped with their outputs ignored,
exactly as ``generate`` keeps computing finished rows, so the policy's KV cache stays one plain
batch. Everything the update needs is recorded on the way: prompt ids (from the reset
observation), the chosen tokens, their log-probs and values at acting time, and the env rewards;
and the means of the numeric infos named in :data:`LOGGED_INFO_KEYS`, which the learners log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from agents.policy import LMPolicy

LOGGED_INFO_KEYS = ("curriculum_level", "success_rate")
"""Numeric info keys a rollout averages (over the reset and every step, over the slots that
report them) into :attr:`Rollout.info_means`, which the learners log: a curriculum wrapper's
level and success rate (``textgym.wrappers.VectorCurriculum``). An env that reports none of them
adds no columns."""


@dataclass
class Rollout:
    """One episode per env slot. Token-level tensors are ``(N, T)``; ``T = max_new_tokens``."""

    input_ids: torch.Tensor  # (N, P + T) prompt (left-padded) + completion (right-padded), long
    attention_mask: torch.Tensor  # (N, P + T)
    prompt_len: int  # P
    mask: torch.Tensor  # (N, T) bool: completion token t exists
    logprobs: torch.Tensor  # (N, T) log-probs at acting time (the "old" policy)
    values: torch.Tensor  # (N, T) values at acting time
    rewards: torch.Tensor  # (N, T) env rewards (sparse: the score on the last token)
    scores: torch.Tensor  # (N,) episode return from the env (sum of its rewards)
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


def _add_info_values(found: dict[str, list], infos: dict[str, Any]) -> None:
    """Append the values of :data:`LOGGED_INFO_KEYS` in a vector ``infos`` to ``found``."""
    for key in LOGGED_INFO_KEYS:
        if key not in infos:
            continue
        values = np.atleast_1d(np.asarray(infos[key]))
        if "_" + key in infos:
            values = values[np.asarray(infos["_" + key], dtype=bool)]
        if values.size and np.issubdtype(values.dtype, np.number):
            found.setdefault(key, []).append(values.astype(np.float64))


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
) -> Rollout:
    """Run one episode in every slot of a textgym vector env with ``policy``; see module doc.

    ``seeds``: one per slot for ``envs.reset`` (equal seeds give equal prompts); ``split``: passed
    as ``reset(options={"split": ...})``; ``generator``: the torch RNG for sampling.
    """
    t0 = time.perf_counter()
    options = {"split": split} if split is not None else None
    obs, infos = envs.reset(seed=None if seeds is None else list(seeds), options=options)
    info_values: dict[str, list] = {}
    _add_info_values(info_values, infos)
    n, length = obs["input_ids"].shape
    horizon = _max_new_tokens(envs, length)
    prompt_len = length - horizon
    prompts = [str(p) for p in infos["prompt"]] if "prompt" in infos else [""] * n
    prompt_ids = torch.from_numpy(obs["input_ids"][:, :prompt_len].copy())
    prompt_mask = torch.from_numpy(obs["attention_mask"][:, :prompt_len].copy())
    action_mask = envs.action_masks() if hasattr(envs, "action_masks") else None
    # Dialogue envs append the partner's replies too: their observations carry agent_mask, and
    # the sequences come from each episode's final observation instead of the actions alone.
    finals = (
        {k: obs[k].copy() for k in ("input_ids", "attention_mask", "agent_mask")}
        if "agent_mask" in obs
        else None
    )

    tokens = np.zeros((n, horizon), dtype=np.int64)
    rewards = np.zeros((n, horizon), dtype=np.float32)
    logprobs = torch.zeros(n, horizon)
    values = torch.zeros(n, horizon)
    lengths = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    completions = [""] * n
    outcomes: list[str | None] = [None] * n  # filled by _steps from info["outcome"]
    supports: list[torch.Tensor] = []  # filled by _steps if the policy returns supports
    policy.reset_state()
    # One autocast region for the whole rollout: autocast caches the bf16 copies of the weights
    # until its outermost region exits, so they are cast once per rollout, not once per step.
    with policy.autocast():
        _steps(
            policy,
            envs,
            obs,
            action_mask,
            deterministic,
            generator,
            tokens,
            rewards,
            logprobs,
            values,
            lengths,
            done,
            completions,
            finals,
            supports,
            info_values,
            outcomes,
        )
    if not done.all():
        raise RuntimeError(
            f"{int((~done).sum())} episode(s) did not end within max_new_tokens={horizon} steps"
        )

    if finals is not None:  # only the agent's positions are actions
        mask = torch.from_numpy(finals["agent_mask"][:, prompt_len:].astype(bool))
        input_ids = torch.from_numpy(finals["input_ids"])
        attention_mask = torch.from_numpy(finals["attention_mask"])
    else:
        mask = torch.arange(horizon)[None, :] < torch.from_numpy(lengths)[:, None]
        completion_ids = torch.from_numpy(tokens).masked_fill_(~mask, 0)
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, mask.long()], dim=1)
    return Rollout(
        input_ids=input_ids,
        attention_mask=attention_mask,
        prompt_len=prompt_len,
        mask=mask,
        logprobs=logprobs * mask,
        values=values * mask,
        rewards=torch.from_numpy(rewards),
        scores=torch.from_numpy(rewards.sum(1)),
        prompts=prompts,
        completions=completions,
        seconds=time.perf_counter() - t0,
        support=supports[0] if supports else None,
        outcomes=outcomes if any(o is not None for o in outcomes) else None,
        info_means={k: _finite_mean(np.concatenate(v)) for k, v in info_values.items()} or None,
    )


def _steps(
    policy: LMPolicy,
    envs: Any,
    obs: dict[str, np.ndarray],
    action_mask: Any,
    deterministic: bool,
    generator: torch.Generator | None,
    tokens: np.ndarray,
    rewards: np.ndarray,
    logprobs: torch.Tensor,
    values: torch.Tensor,
    lengths: np.ndarray,
    done: np.ndarray,
    completions: list[str],
    finals: dict[str, np.ndarray] | None = None,
    supports: list[torch.Tensor] | None = None,
    info_values: dict[str, list] | None = None,
    outcomes: list[str | None] | None = None,
) -> None:
    """The stepping loop of :func:`collect_rollout`; fills the buffers in place.

    Token-level buffers are indexed by where each action lands after ``P`` (the observation's
    ``num_generated``): step ``t`` in TextGen, later in a dialogue, where the partner's replies
    sit in between. ``finals`` (dialogues) receives each episode's final observation.
    ``supports`` receives one ``(N, T, ceil(V / 8))`` buffer if the policy returns supports;
    ``info_values`` the values of :data:`LOGGED_INFO_KEYS` in each step's infos; ``outcomes``
    each finished episode's ``info["outcome"]`` (verifiable tasks).
    """
    for _ in range(tokens.shape[1]):
        out = policy.act(
            obs, action_mask, deterministic=deterministic, generator=generator, ignore=done
        )
        at = obs["num_generated"].reshape(-1)  # where the actions land after P (TextGen: t)
        obs, reward, terminated, truncated, infos = envs.step(out.actions)
        if info_values is not None:
            _add_info_values(info_values, infos)
        live = ~done
        rows = np.flatnonzero(live)
        tokens[rows, at[rows]] = out.actions[rows]
        rewards[rows, at[rows]] = reward[rows]
        rows_t, at_t = torch.from_numpy(rows), torch.from_numpy(at[rows])
        logprobs[rows_t, at_t] = out.logprobs.float().cpu()[rows_t]
        values[rows_t, at_t] = out.values.float().cpu()[rows_t]
        if out.support is not None and supports is not None:
            if not supports:
                supports.append(
                    torch.zeros(*tokens.shape, out.support.shape[-1], dtype=torch.uint8)
                )
            supports[0][rows_t, at_t] = out.support.cpu()[rows_t]
        lengths[live] += 1
        finished = live & (terminated | truncated)
        if finished.any():
            final = infos.get("final_info", infos)  # SAME_STEP autoreset nests it
            if "completion" in final:
                for i in np.flatnonzero(finished & final["_completion"]).tolist():
                    completions[i] = str(final["completion"][i])
            if "outcome" in final and outcomes is not None:
                for i in np.flatnonzero(finished & final["_outcome"]).tolist():
                    outcomes[i] = str(final["outcome"][i])
            if finals is not None:  # NEXT_STEP: obs is the final one; SAME_STEP: final_obs
                final_obs = infos.get("final_obs")
                for i in np.flatnonzero(finished).tolist():
                    last = None if final_obs is None else final_obs[i]
                    for key, array in finals.items():
                        array[i] = obs[key][i] if last is None else last[key]
        done |= finished
        if done.all():
            return


# --- minibatches ----------------------------------------------------------------------------------

SEQUENCE_KEYS = ("input_ids", "attention_mask")


def select(
    batch: dict[str, torch.Tensor], index: torch.Tensor, prompt_len: int
) -> tuple[dict[str, torch.Tensor], int]:
    """Rows ``index`` of a batch dict, trimmed to the columns they use.

    ``batch`` holds ``input_ids``/``attention_mask`` ``(N, P + T)``, a bool ``mask`` ``(N, T)`` and
    any other ``(N, T, ...)`` token-level or ``(N,)`` sequence-level tensors. Leading prompt columns
    that are padding in every selected row and completion columns past the longest selected
    completion are cut: shorter minibatches, same result. Returns (minibatch, new prompt length).
    """
    attention = batch["attention_mask"][index]
    lead = int(attention[:, :prompt_len].any(0).to(torch.int8).argmax())
    mask = batch["mask"][index]
    width = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
    out: dict[str, torch.Tensor] = {}
    for key, value in batch.items():
        rows = value[index]
        if key in SEQUENCE_KEYS:
            out[key] = rows[:, lead : prompt_len + width]
        elif rows.ndim >= 2:  # token-level (N, T, ...)
            out[key] = rows[:, :width]
        else:
            out[key] = rows
    return out, prompt_len - lead


# --- advantages -----------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean) over the ``mask``ed entries."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def _action_order(mask: torch.Tensor) -> torch.Tensor | None:
    """A column order that moves each row's masked entries to its front (stable), or None when
    they are there already (every TextGen rollout). A dialogue's agent tokens have gaps (the
    partner's replies); its returns and advantages run over the agent's tokens only."""
    m = mask.to(torch.int8)
    if bool((m[:, 1:] <= m[:, :-1]).all()):
        return None
    return torch.sort(1 - m, dim=1, stable=True).indices


def _unorder(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x).scatter_(1, order, x)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Monte-Carlo returns ``G_t = sum_k gamma^k r_{t+k}`` within each episode, ``(N, T)``
    (over the masked tokens: in a dialogue the partner's tokens are skipped)."""
    order = _action_order(mask)
    if order is not None:
        compact = discounted_returns(rewards.gather(1, order), mask.gather(1, order), gamma)
        return _unorder(compact, order)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns * mask


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns = advantages + values).

    An episode ends at its last token whether terminated or truncated: truncation at
    ``max_new_tokens`` is part of the task (the score comes then), so nothing is bootstrapped.
    In a dialogue the masked (agent) tokens are a chain of their own, the partner's skipped.
    """
    order = _action_order(mask)
    if order is not None:
        compact = [x.gather(1, order) for x in (rewards, values, mask)]
        advantages, returns = gae(*compact, gamma, lam)
        return _unorder(advantages, order), _unorder(returns, order)
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    horizon = rewards.shape[1]
    for t in reversed(range(horizon)):
        following = mask[:, t + 1].to(values.dtype) if t + 1 < horizon else 0.0
        next_value = values[:, t + 1] * following if t + 1 < horizon else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * following * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def group_advantages(
    scores: torch.Tensor, group_size: int, baseline: str = "mean", scale: bool = False
) -> torch.Tensor:
    """Advantages of ``(N,)`` episode scores against their group (``group_size`` consecutive
    slots completing the same prompt): ``"mean"`` subtracts the group mean (GRPO), ``"loo"`` the
    mean of the *other* members (RLOO, an unbiased baseline); ``scale`` divides by the group's
    std (GRPO's normalisation)."""
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} episodes do not split into groups of {group_size}")
    groups = scores.view(-1, group_size)
    total = groups.sum(-1, keepdim=True)
    if baseline == "mean":
        advantages = groups - total / group_size
    elif baseline == "loo":
        if group_size < 2:
            raise ValueError("a leave-one-out baseline needs group_size >= 2")
        advantages = groups - (total - groups) / (group_size - 1)
    else:
        raise ValueError(f"baseline must be 'mean' or 'loo', got {baseline!r}")
    if scale:
        advantages = advantages / (groups.std(-1, keepdim=True) + 1e-4)
    return advantages.reshape(-1)


def flat_groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(N / group_size,)`` bool: which groups' episodes all got the same score. Every member
    of such a group has advantage 0 against any group baseline: the group carries no signal."""
    groups = scores.view(-1, group_size)
    return (groups == groups[:, :1]).all(-1)


def group_rows(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """The episode rows of the groups a ``(N / group_size,)`` bool mask selects, in order."""
    first = torch.nonzero(groups).reshape(-1, 1) * group_size
    return (first + torch.arange(group_size, device=groups.device)).reshape(-1)


KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    ``k1 = logp - ref`` (unbiased, can be negative), ``k2 = (logp - ref)^2 / 2``, ``k3 =
    exp(ref - logp) - 1 - (ref - logp)`` (unbiased and >= 0; Schulman's estimator, GRPO's loss).
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"kl estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")

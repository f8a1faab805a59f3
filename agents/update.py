"""The building blocks of a learner's update: plain functions that ``update`` calls in order.

Every learner's ``update`` (``reinforce.py``, ``a2c.py``, ``ppo.py``, ``grpo.py``, ``rloo.py``)
reads top to bottom as the same five moves, each visible in its own file:

    batch = rollout_batch(rollout, device)                         # 1. the rollout's tensors
    orders = epoch_orders(rng, n, minibatch_size, update_epochs)   # 2. one row order per epoch
    metrics = recompute(policy, batch, ..., orders[0], ...)        # 3. old / reference log-probs
    batch["advantages"] = ...                                      # 4. agents.advantages
    for order in orders:                                           # 5. epochs x minibatches
        for mb, mb_prompt_len in minibatches(batch, prompt_len, order, size):
            stats = forward(policy, mb, mb_prompt_len)             #    per-token stats, with grad
            loss = clipped_surrogate(...) + ...                    #    the learner's loss
            learner.optimizer_step(loss)                           #    backward, clip, step

**The batch** (:func:`rollout_batch`) is a dict of tensors on the policy's device, one row per
episode. Its keys, named here once:

* ``input_ids``, ``attention_mask``: ``(N, P + T)``, prompt (left-padded) then completion;
* ``mask``: bool ``(N, T)``, the completion tokens the agent chose (the loss runs over these);
* ``rewards``: ``(N, T)`` the env's rewards; ``episode_returns``: ``(N,)`` their sums;
* ``acting_logprobs``: ``(N, T)`` the sampled tokens' log-probs as the acting path computed
  them (diagnostics only: ``logprob_gap``);
* ``support`` (NLPO): packed sets each action's distribution was restricted to;
* set by :func:`recompute`: ``old_logprobs`` (and ``old_values``), the policy's log-probs
  (values) before the update; ``ref_logprobs``, the reference model's; ``kl``, the per-token KL
  estimate between them (zeros without a reference);
* set by the learner: ``advantages`` and, with a value head, ``value_targets``.

Minibatches are row subsets trimmed to the columns they use (:func:`select`). One update
consumes one order per epoch, drawn by :func:`epoch_orders` from the learner's seeded RNG.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from agents import distributed
from agents.advantages import kl_estimate, masked_mean
from agents.rollout import Rollout
from agents.token_stats import TokenStats

SEQUENCE_KEYS = ("input_ids", "attention_mask")


def rollout_batch(rollout: Rollout, device: torch.device) -> dict[str, torch.Tensor]:
    """The rollout's tensors as a batch dict on ``device`` (keys: the module docstring)."""
    rollout = rollout.to(device)
    batch = {
        "input_ids": rollout.input_ids,
        "attention_mask": rollout.attention_mask,
        "mask": rollout.mask,
        "rewards": rollout.rewards,
        "episode_returns": rollout.episode_returns,
        "acting_logprobs": rollout.acting_logprobs,
    }
    if rollout.support is not None:  # NLPO: the masked distributions the actions came from
        batch["support"] = rollout.support
    return batch


def epoch_orders(
    rng: np.random.Generator, n: int, minibatch_size: int | None, epochs: int
) -> list[np.ndarray]:
    """The row order of each epoch of an update: a fresh permutation per epoch, or ``arange``
    when the update is one full-batch step (order is moot; no random draw)."""
    if minibatch_size_of(n, minibatch_size) >= n and epochs == 1:
        return [np.arange(n)]
    return [rng.permutation(n) for _ in range(epochs)]


def minibatch_size_of(n: int, minibatch_size: int | None) -> int:
    """Rows per minibatch of an ``n``-row batch (None: the whole batch)."""
    return min(minibatch_size or n, n)


def is_one_step(orders: list[np.ndarray], minibatch_size: int | None) -> bool:
    """Whether the update is a single full-batch gradient step (one epoch, one minibatch)."""
    n = len(orders[0])
    return len(orders) == 1 and minibatch_size_of(n, minibatch_size) >= n


def select(
    batch: dict[str, torch.Tensor], index: torch.Tensor, prompt_len: int
) -> tuple[dict[str, torch.Tensor], int]:
    """Rows ``index`` of a batch, trimmed to the columns they use.

    Leading prompt columns that are padding in every selected row and completion columns past the
    longest selected completion are cut: shorter minibatches, same result. ``(N, P + T)``
    sequences, ``(N, T, ...)`` token-level and ``(N,)`` sequence-level tensors are each cut as
    they should be. Returns (minibatch, its prompt length).
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


def minibatches(
    batch: dict[str, torch.Tensor], prompt_len: int, order: np.ndarray, size: int
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor], int]]:
    """(row index, minibatch, its prompt length) for the minibatches of one epoch in ``order``."""
    device = batch["input_ids"].device
    for start in range(0, len(order), size):
        index = torch.from_numpy(order[start : start + size]).to(device)
        mb, mb_prompt_len = select(batch, index, prompt_len)
        yield index, mb, mb_prompt_len


def forward(
    policy: Any,
    mb: dict[str, torch.Tensor],
    prompt_len: int,
    *,
    values: bool = False,
    entropy: bool = True,
    reference: bool = False,
) -> TokenStats:
    """The minibatch's per-token statistics under the policy (with gradients when enabled) or
    its reference: :meth:`~agents.policy.LMPolicy.token_stats` over ``mb["mask"]``, under
    ``mb["support"]`` when the actions were sampled from restricted sets (NLPO)."""
    return policy.token_stats(
        mb["input_ids"],
        mb["attention_mask"],
        prompt_len,
        with_entropy=entropy,
        with_values=values,
        reference=reference,
        mask=mb["mask"],
        support=mb.get("support"),
    )


@torch.no_grad()
def recompute(
    policy: Any,
    batch: dict[str, torch.Tensor],
    prompt_len: int,
    order: np.ndarray,
    size: int,
    *,
    reference: bool,
    kl_estimator: str,
    old: bool = True,
) -> dict[str, float]:
    """Set the batch's ``old_logprobs``, ``old_values``, ``ref_logprobs`` and ``kl`` by teacher
    forcing; return the metrics ``kl`` and ``logprob_gap``.

    They are computed in exactly the minibatches (rows, trimmed shapes) of the update's first
    epoch (``order``, ``size``), by the same forward the update runs. Kernels round differently
    for different shapes (under bf16 by up to 0.3 nats for SmolLM2), so the acting path's
    log-probs, or one full-batch forward, would differ from the update's by rounding noise.
    Computed this way, the first epoch's ratios start at exactly 1 and a policy equal to its
    reference has a KL of exactly 0: with no reward signal there is no gradient at all.

    ``reference``: also score the reference model (a KL penalty); without it ``ref_logprobs``
    is the old log-probs, ``kl`` is 0 and the logged ``kl`` NaN. ``old=False``: leave the
    policy's own statistics out (no forward): the update is a single full-batch step whose
    forward *is* this recomputation, and it takes them from that step with
    :func:`old_from_step` (same values, one forward less). ``kl`` (per token, the configured
    estimator) is then 0, so only learners whose advantages do not use it may do this.
    Logged: ``kl``, the per-sequence sum of k1 (the sampled estimate of KL(pi || ref)), and
    ``logprob_gap``, the mean |acting - recomputed| log-prob per token (the acting path's
    rounding, e.g. under bf16).
    """
    mask = batch["mask"]
    old_logprobs = torch.zeros_like(batch["acting_logprobs"])
    old_values = torch.zeros_like(old_logprobs)
    ref_logprobs = torch.zeros_like(old_logprobs)
    for index, mb, mb_prompt_len in minibatches(batch, prompt_len, order, size):
        width = int(mb["mask"].shape[1])
        if old:
            stats = forward(policy, mb, mb_prompt_len, values=True, entropy=False)
            old_logprobs[index, :width], old_values[index, :width] = stats.logprobs, stats.values
        if reference:
            ref = forward(policy, mb, mb_prompt_len, entropy=False, reference=True)
            ref_logprobs[index, :width] = ref.logprobs
    if not old:  # old_from_step fills old_logprobs and logs kl / logprob_gap
        batch["kl"] = torch.zeros_like(old_logprobs)
        if reference:
            batch["ref_logprobs"] = ref_logprobs
        return {}
    batch["old_logprobs"], batch["old_values"] = old_logprobs, old_values
    gap = float(masked_mean((batch["acting_logprobs"] - old_logprobs).abs(), mask))
    if not reference:
        batch["ref_logprobs"], batch["kl"] = old_logprobs, torch.zeros_like(old_logprobs)
        return {"kl": math.nan, "logprob_gap": gap}
    batch["ref_logprobs"] = ref_logprobs
    batch["kl"] = kl_estimate(old_logprobs, ref_logprobs, kl_estimator) * mask
    kl_seq = ((old_logprobs - ref_logprobs) * mask).sum(-1)
    return distributed.mean_over_ranks({"kl": float(kl_seq.mean()), "logprob_gap": gap})


def old_from_step(mb: dict[str, torch.Tensor], stats: TokenStats) -> dict[str, float]:
    """The single full-batch step's own statistics, detached, as the old ones (see
    :func:`recompute` with ``old=False``); returns the metrics recompute would have."""
    mask = stats.mask
    mb["old_logprobs"] = stats.logprobs.detach()
    if stats.values is not None:
        mb["old_values"] = stats.values.detach()
    gap = masked_mean((mb["acting_logprobs"] - mb["old_logprobs"]).abs(), mask)
    out = {"logprob_gap": float(gap)}
    if "ref_logprobs" in mb:
        out["kl"] = float(((mb["old_logprobs"] - mb["ref_logprobs"]) * mask).sum(-1).mean())
    else:
        out["kl"] = math.nan
    return distributed.mean_over_ranks(out)


# --- losses ---------------------------------------------------------------------------------------


def clipped_surrogate(
    stats: TokenStats,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = masked_mean,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped policy loss ``max(-A r, -A clip(r, 1 - eps, 1 + eps))``, ``r = pi /
    pi_old``, over the completion tokens, with its diagnostics ``clip_frac`` and ``approx_kl``
    (k3 of pi_old || pi). ``reduce`` aggregates the per-token loss (default: the token mean;
    GRPO's ``loss_type``: :func:`aggregate_loss`)."""
    mask = stats.mask
    log_ratio = (stats.logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip))
    with torch.no_grad():
        clip_frac = masked_mean(((ratio - 1).abs() > clip).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
    return reduce(loss, mask), {"clip_frac": clip_frac.item(), "approx_kl": approx_kl.item()}


def policy_gradient_loss(advantages: torch.Tensor, stats: TokenStats) -> torch.Tensor:
    """``-mean_t(A_t * log pi(a_t | s_t))`` over the completion tokens (REINFORCE, A2C)."""
    return -masked_mean(advantages * stats.logprobs, stats.mask)


def value_loss(
    stats: TokenStats,
    old_values: torch.Tensor,
    targets: torch.Tensor,
    clip: float | None = None,
) -> torch.Tensor:
    """``0.5 * mean_t (V(s_t) - target_t)^2``; with ``clip``, the larger of that and the loss
    of the prediction clipped to ``clip`` around the old value (PPO's value clipping)."""
    values = stats.values
    loss = (values - targets) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        loss = torch.max(loss, (clipped - targets) ** 2)
    return 0.5 * masked_mean(loss, stats.mask)


LOSS_TYPES = ("token", "sequence", "dr_grpo")


def aggregate_loss(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_new_tokens: int
) -> torch.Tensor:
    """Reduce a ``(B, T)`` per-token loss over the ``mask``ed tokens: ``"token"``, the mean over
    all tokens; ``"sequence"``, the mean over each sequence's tokens, then over sequences;
    ``"dr_grpo"``, the sum divided by ``B * max_new_tokens`` (see ``grpo.py``)."""
    mask = mask.to(per_token.dtype)
    if loss_type == "token":
        return masked_mean(per_token, mask)
    if loss_type == "sequence":
        lengths = mask.sum(-1)
        rows = lengths > 0
        return ((per_token * mask).sum(-1)[rows] / lengths[rows]).sum() / rows.sum().clamp_min(1)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.shape[0] * max_new_tokens)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def kl_exceeds(approx_kl: float, target_kl: float | None) -> bool:
    """PPO's early stop: whether the policy moved more than ``1.5 * target_kl`` (approx. KL per
    token, averaged over ranks: the same decision on every rank) from the rollout policy."""
    if target_kl is None:
        return False
    return distributed.mean_over_ranks({"kl": float(approx_kl)})["kl"] > 1.5 * target_kl


class MetricMeans:
    """Means over an update's gradient steps of the metrics each step reports."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.steps = 0

    def add(self, metrics: dict[str, float]) -> None:
        """One gradient step's metrics."""
        for key, value in metrics.items():
            self.sums[key] += float(value)
        self.steps += 1

    def means(self) -> dict[str, float]:
        return {key: value / max(self.steps, 1) for key, value in self.sums.items()}

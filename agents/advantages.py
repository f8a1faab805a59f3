"""Advantages and KL estimates: plain functions of tensors, shared by the learners.

All token-level tensors are ``(N, T)`` with a bool ``mask`` of the completion tokens the agent
chose (in a dialogue the partner's tokens sit between them and are skipped). Sequence-level
tensors are ``(N,)``. Nothing here touches a model.

* :func:`discounted_returns` (REINFORCE), :func:`gae` (A2C, PPO, NLPO);
* :func:`group_advantages` (GRPO, RLOO) and :func:`leave_one_out_mean` (RLOO, REINFORCE's
  ``"loo"`` baseline); :func:`flat_groups` / :func:`group_rows` (dropping groups without signal);
* :func:`whiten` (zero mean, unit variance) and :func:`scale_by_std` (unit variance, mean kept
  in sign): the two normalisations a learner may apply;
* :func:`kl_estimate`: per-token estimators of KL(policy || reference).
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over the ``mask``ed entries (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp_min(1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` normalised to zero mean and unit variance over the ``mask``ed entries (PPO's
    advantage normalisation), zero elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def scale_by_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its standard deviation over the ``mask``ed entries, not centred (the
    baseline already centred it), zero elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return x * torch.rsqrt(var + 1e-8) * mask


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
    """Generalised advantage estimation; returns (advantages, value targets = advantages +
    values).

    An episode ends at its last token whether terminated or truncated: truncation at
    ``max_new_tokens`` is part of the task (the score comes then), so nothing is bootstrapped.
    In a dialogue the masked (agent) tokens are a chain of their own, the partner's skipped.
    """
    order = _action_order(mask)
    if order is not None:
        compact = [x.gather(1, order) for x in (rewards, values, mask)]
        advantages, targets = gae(*compact, gamma, lam)
        return _unorder(advantages, order), _unorder(targets, order)
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


def leave_one_out_mean(x: torch.Tensor) -> torch.Tensor:
    """For each entry of the last dimension, the mean of the *other* entries (0 for a single
    entry): a baseline that does not depend on the episode's own actions, hence unbiased."""
    k = x.shape[-1]
    return (x.sum(-1, keepdim=True) - x) / max(k - 1, 1)


def group_advantages(
    returns: torch.Tensor, group_size: int, baseline: str = "mean", scale: bool = False
) -> torch.Tensor:
    """Advantages of ``(N,)`` episode returns against their group (``group_size`` consecutive
    slots completing the same prompt): ``"mean"`` subtracts the group mean (GRPO), ``"loo"`` the
    mean of the *other* members (RLOO, :func:`leave_one_out_mean`); ``scale`` divides by the
    group's std (GRPO's normalisation)."""
    if returns.shape[0] % group_size:
        raise ValueError(f"{returns.shape[0]} episodes do not split into groups of {group_size}")
    groups = returns.view(-1, group_size)
    if baseline == "mean":
        advantages = groups - groups.sum(-1, keepdim=True) / group_size
    elif baseline == "loo":
        if group_size < 2:
            raise ValueError("a leave-one-out baseline needs group_size >= 2")
        advantages = groups - leave_one_out_mean(groups)
    else:
        raise ValueError(f"baseline must be 'mean' or 'loo', got {baseline!r}")
    if scale:
        advantages = advantages / (groups.std(-1, keepdim=True) + 1e-4)
    return advantages.reshape(-1)


def flat_groups(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(N / group_size,)`` bool: which groups' episodes all got the same return. Every member
    of such a group has advantage 0 against any group baseline: the group carries no signal."""
    groups = returns.view(-1, group_size)
    return (groups == groups[:, :1]).all(-1)


def group_rows(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """The episode rows of the groups a ``(N / group_size,)`` bool mask selects, in order."""
    first = torch.nonzero(groups).reshape(-1, 1) * group_size
    return (first + torch.arange(group_size, device=groups.device)).reshape(-1)


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

"""REINFORCE (Williams, 1992): Monte-Carlo returns, an optional baseline, one gradient step.

    loss = -mean_t[(G_t - b) * log pi(a_t | s_t)] - ent_coef * entropy

``G_t`` is the discounted return of the shaped rewards (env reward minus ``kl_coef`` times the
per-token KL to the reference). Baselines: ``"none"``; ``"moving_average"`` (an exponential
average of past episode returns); ``"loo"`` (leave-one-out: the mean return of the *other*
episodes of the batch, unbiased because it does not depend on the episode's own actions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from agents.base import Learner, LearnerConfig
from agents.rollout import Rollout, discounted_returns, masked_mean, whiten
from agents.token_stats import TokenStats

BASELINES = ("none", "moving_average", "loo")


@dataclass
class REINFORCEConfig(LearnerConfig):
    """REINFORCE settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    Attributes:
        gamma: discount of the returns (1.0: the episode's total reward counts for every token).
        baseline: ``"none"``, ``"moving_average"`` or ``"loo"``.
        baseline_momentum: the moving average's decay per iteration.
        normalize_advantages: divide the advantages by their batch std.
    """

    lr: float = 5e-5
    gamma: float = 1.0
    baseline: str = "moving_average"
    baseline_momentum: float = 0.9
    normalize_advantages: bool = False


def policy_gradient_loss(
    advantages: torch.Tensor, stats: TokenStats, ent_coef: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """``-mean(A * log pi) - ent_coef * entropy`` over the completion tokens (REINFORCE, A2C)."""
    mask = stats.mask
    pg_loss = -masked_mean(advantages * stats.logprobs, mask)
    entropy = masked_mean(stats.entropies, mask)
    return pg_loss - ent_coef * entropy, {"pg_loss": pg_loss.item(), "entropy": entropy.item()}


class REINFORCE(Learner):
    """Monte-Carlo policy gradient with a baseline; see the module docstring."""

    Config = REINFORCEConfig
    config: REINFORCEConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.config.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.config.baseline!r}")
        self.baseline: float | None = None  # the moving average

    def advantages_use_policy(self) -> bool:
        return self.uses_reference()  # returns use the policy only through the KL penalty

    def update(self, rollout: Rollout) -> dict[str, float]:
        c = self.config
        batch, metrics = self.prepare(rollout)
        mask = batch["mask"]
        rewards = batch["rewards"] - self.kl_coef * batch["kl"]
        returns = discounted_returns(rewards, mask, c.gamma)
        episode_returns = returns[:, 0]
        if c.baseline == "moving_average":
            mean = float(episode_returns.mean())
            baseline = mean if self.baseline is None else self.baseline
            self.baseline = c.baseline_momentum * baseline + (1 - c.baseline_momentum) * mean
            advantages = (returns - baseline) * mask
        elif c.baseline == "loo":
            n = episode_returns.shape[0]
            others = (episode_returns.sum() - episode_returns) / max(n - 1, 1)
            advantages = (returns - others[:, None]) * mask
        else:
            advantages = returns
        if c.normalize_advantages:
            advantages = whiten(advantages, mask, shift_mean=False)
        batch["advantages"] = advantages

        def loss_fn(mb: dict[str, torch.Tensor], stats: TokenStats):
            return policy_gradient_loss(mb["advantages"], stats, c.ent_coef)

        metrics.update(self.gradient_epochs(batch, rollout.prompt_len, loss_fn))
        metrics["baseline"] = self.baseline if self.baseline is not None else 0.0
        return metrics

    def extra_state(self) -> dict[str, Any]:
        return {"baseline": self.baseline}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.baseline = state.get("baseline")

    def extra_state_problem(self, state: dict[str, Any]) -> str | None:
        baseline = state.get("baseline")
        if baseline is None or (
            isinstance(baseline, (int, float))
            and not isinstance(baseline, bool)
            and math.isfinite(baseline)
        ):
            return None
        return f"baseline is {baseline!r:.60}, not a finite number or null"

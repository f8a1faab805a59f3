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

from agents.advantages import discounted_returns, leave_one_out_mean, masked_mean, scale_by_std
from agents.base import Learner, LearnerConfig
from agents.rollout import Rollout
from agents.update import (
    MetricMeans,
    epoch_orders,
    forward,
    is_one_step,
    minibatch_size_of,
    minibatches,
    old_from_step,
    policy_gradient_loss,
    recompute,
    rollout_batch,
)
from textgym.errors import InvalidArgumentError

BASELINES = ("none", "moving_average", "loo")


@dataclass
class REINFORCEConfig(LearnerConfig):
    """REINFORCE settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    Attributes:
        gamma: discount of the returns (1.0: the episode's total reward counts for every token).
        baseline: ``"none"``, ``"moving_average"`` or ``"loo"``.
        baseline_momentum: the moving average's decay per iteration.
        scale_advantages: divide the advantages by their standard deviation over the batch's
            tokens (not centred: the baseline centres them).
    """

    lr: float = 5e-5
    gamma: float = 1.0
    baseline: str = "moving_average"
    baseline_momentum: float = 0.9
    scale_advantages: bool = False

    def check(self) -> None:
        super().check()
        if self.baseline not in BASELINES:
            raise InvalidArgumentError(
                f"{type(self).__name__}: baseline must be one of {BASELINES}, got {self.baseline!r}"
            )


class REINFORCE(Learner):
    """Monte-Carlo policy gradient with a baseline; see the module docstring."""

    Config = REINFORCEConfig
    config: REINFORCEConfig

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.baseline: float | None = None  # the moving average

    def update(self, rollout: Rollout) -> dict[str, float]:
        c = self.config
        batch = rollout_batch(rollout, self.policy.device)
        mask, n = batch["mask"], rollout.num_envs
        size = minibatch_size_of(n, c.minibatch_size)
        orders = epoch_orders(self.rng, n, c.minibatch_size, c.update_epochs)

        # The reference's log-probs (the KL penalty in the returns) and the old log-probs. The
        # returns use the policy only through that penalty: without one, a single full-batch
        # step takes the old log-probs from its own forward (agents.update.old_from_step).
        reference = self.uses_reference()
        defer = is_one_step(orders, c.minibatch_size) and not reference
        metrics = recompute(
            self.policy,
            batch,
            rollout.prompt_len,
            orders[0],
            size,
            reference=reference,
            kl_estimator=c.kl_estimator,
            old=not defer,
        )

        # Advantages: returns of the KL-penalised rewards minus the baseline.
        rewards = batch["rewards"] - self.kl_coef * batch["kl"]
        returns = discounted_returns(rewards, mask, c.gamma)
        episode_returns = returns[:, 0]
        if c.baseline == "moving_average":
            mean = float(episode_returns.mean())
            baseline = mean if self.baseline is None else self.baseline
            self.baseline = c.baseline_momentum * baseline + (1 - c.baseline_momentum) * mean
            advantages = (returns - baseline) * mask
        elif c.baseline == "loo":
            advantages = (returns - leave_one_out_mean(episode_returns)[:, None]) * mask
        else:
            advantages = returns
        if c.scale_advantages:
            advantages = scale_by_std(advantages, mask)
        batch["advantages"] = advantages

        # The gradient steps (one full-batch step by default).
        means = MetricMeans()
        for order in orders:
            for _, mb, mb_prompt_len in minibatches(batch, rollout.prompt_len, order, size):
                stats = forward(self.policy, mb, mb_prompt_len)
                if defer:
                    metrics.update(old_from_step(mb, stats))
                pg_loss = policy_gradient_loss(mb["advantages"], stats)
                entropy = masked_mean(stats.entropies, stats.mask)
                loss = pg_loss - c.ent_coef * entropy
                self.optimizer_step(loss)
                means.add(
                    {"pg_loss": pg_loss.item(), "entropy": entropy.item(), "loss": loss.item()}
                )
        metrics.update(means.means(), epochs=len(orders), stopped_early=0.0)
        metrics["baseline"] = self.baseline if self.baseline is not None else 0.0
        return metrics

    # -- checkpoints: the moving average -------------------------------------------------------

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

"""A2C: synchronous advantage actor-critic with the value head on the LM's trunk.

    A_t = GAE(gamma, lambda) of the shaped rewards against V(s_t)      (lambda=1: G_t - V(s_t))
    loss = -mean_t[A_t * log pi(a_t | s_t)] + vf_coef * mean_t[(V(s_t) - R_t)^2] / 2
           - ent_coef * entropy

One gradient step per rollout, as in A2C (no ratio, no clipping: that is PPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.advantages import gae, masked_mean, whiten
from agents.base import Learner, LearnerConfig
from agents.rollout import Rollout
from agents.update import (
    MetricMeans,
    epoch_orders,
    forward,
    minibatch_size_of,
    minibatches,
    policy_gradient_loss,
    recompute,
    rollout_batch,
    value_loss,
)


@dataclass
class A2CConfig(LearnerConfig):
    """A2C settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    Attributes:
        gamma: discount.
        gae_lambda: GAE lambda (1.0: Monte-Carlo advantages ``G_t - V(s_t)``).
        vf_coef: weight of the value loss.
        whiten_advantages: normalise the advantages to zero mean and unit variance over the
            batch's tokens (off, as in SB3's A2C: without PPO's clipping, whitened advantages of
            a nearly solved batch blow small differences up into full-size steps, and a
            from-scratch policy collapses).
    """

    lr: float = 5e-5
    gamma: float = 1.0
    gae_lambda: float = 1.0
    vf_coef: float = 0.1
    whiten_advantages: bool = False

    # A2C is one gradient step per rollout: a policy's batch-shaping defaults (LMPolicy.tiny's
    # PPO-style epochs, minibatches and multi-rollout updates) do not apply to it.
    ONE_STEP_PER_ROLLOUT = ("update_epochs", "minibatch_size", "episodes_per_update")

    @classmethod
    def for_policy(cls, policy: Any, **changes: Any) -> A2CConfig:
        config = super().for_policy(policy, **changes)
        for name in cls.ONE_STEP_PER_ROLLOUT:
            if name not in changes:
                setattr(config, name, getattr(cls, name))
        return config


class A2C(Learner):
    """Advantage actor-critic; see the module docstring."""

    Config = A2CConfig
    config: A2CConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        c = self.config
        batch = rollout_batch(rollout, self.policy.device)
        mask, n = batch["mask"], rollout.num_envs
        size = minibatch_size_of(n, c.minibatch_size)
        orders = epoch_orders(self.rng, n, c.minibatch_size, c.update_epochs)

        # The old values (the baseline) and the reference's log-probs (the KL penalty).
        metrics = recompute(
            self.policy,
            batch,
            rollout.prompt_len,
            orders[0],
            size,
            reference=self.uses_reference(),
            kl_estimator=c.kl_estimator,
        )

        # Advantages: GAE of the KL-penalised rewards against the old values.
        rewards = batch["rewards"] - self.kl_coef * batch["kl"]
        advantages, targets = gae(rewards, batch["old_values"], mask, c.gamma, c.gae_lambda)
        if c.whiten_advantages:
            advantages = whiten(advantages, mask)
        batch["advantages"], batch["value_targets"] = advantages, targets

        # The gradient step (one per rollout with A2C's defaults).
        means = MetricMeans()
        for order in orders:
            for _, mb, mb_prompt_len in minibatches(batch, rollout.prompt_len, order, size):
                stats = forward(self.policy, mb, mb_prompt_len, values=True)
                pg_loss = policy_gradient_loss(mb["advantages"], stats)
                entropy = masked_mean(stats.entropies, stats.mask)
                vf_loss = value_loss(stats, mb["old_values"], mb["value_targets"])
                loss = pg_loss - c.ent_coef * entropy + c.vf_coef * vf_loss
                self.optimizer_step(loss)
                means.add(
                    {
                        "pg_loss": pg_loss.item(),
                        "entropy": entropy.item(),
                        "vf_loss": vf_loss.item(),
                        "loss": loss.item(),
                    }
                )
        metrics.update(means.means(), epochs=len(orders), stopped_early=0.0)
        return metrics

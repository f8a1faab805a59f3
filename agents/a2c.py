"""A2C: synchronous advantage actor-critic with the value head on the LM's trunk.

    A_t = GAE(gamma, lambda) of the shaped rewards against V(s_t)      (lambda=1: G_t - V(s_t))
    loss = -mean_t[A_t * log pi(a_t | s_t)] + vf_coef * mean_t[(V(s_t) - R_t)^2] / 2
           - ent_coef * entropy

One gradient step per rollout, as in A2C (no ratio, no clipping: that is PPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents.base import Learner, LearnerConfig
from agents.reinforce import policy_gradient_loss
from agents.rollout import Rollout, masked_mean
from agents.token_stats import TokenStats


@dataclass
class A2CConfig(LearnerConfig):
    """A2C settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    Attributes:
        gamma: discount.
        gae_lambda: GAE lambda (1.0: Monte-Carlo advantages ``G_t - V(s_t)``).
        vf_coef: weight of the value loss.
        normalize_advantages: whiten the advantages over the batch (off, as in SB3's A2C:
            without PPO's clipping, whitened advantages of a nearly solved batch blow small
            differences up into full-size steps, and a from-scratch policy collapses).
    """

    lr: float = 5e-5
    gamma: float = 1.0
    gae_lambda: float = 1.0
    vf_coef: float = 0.1
    normalize_advantages: bool = False

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
        batch, metrics = self.prepare(rollout)
        self.kl_penalised_gae(batch, c.gamma, c.gae_lambda, c.normalize_advantages)

        def loss_fn(mb: dict[str, torch.Tensor], stats: TokenStats):
            loss, m = policy_gradient_loss(mb["advantages"], stats, c.ent_coef)
            vf_loss = 0.5 * masked_mean((stats.values - mb["returns"]) ** 2, stats.mask)
            m["vf_loss"] = vf_loss.item()
            return loss + c.vf_coef * vf_loss, m

        metrics.update(self.gradient_epochs(batch, rollout.prompt_len, loss_fn, with_values=True))
        return metrics

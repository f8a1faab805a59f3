"""RLOO (Ahmadian et al., 2024): REINFORCE with a leave-one-out baseline over groups.

Each rollout draws ``num_envs / group_size`` prompts and completes each ``group_size`` times.
The reward of a completion is its return minus the KL penalty summed over its tokens,
``R = return - kl_coef * sum_t KL_t`` (sequence level), and its advantage, on every token, is
``A = R - mean of the other group members' R`` (leave-one-out: a baseline independent of the
completion's own actions, hence unbiased). The loss is PPO's clipped surrogate (a token mean),
which equals REINFORCE's with one epoch and one minibatch, minus ``ent_coef`` times the entropy.
Flat groups (``drop_flat_groups``) and the group settings RLOO shares with GRPO: ``groups.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.advantages import group_advantages, masked_mean, scale_by_std
from agents.base import Learner
from agents.groups import GroupConfig, informative_groups
from agents.rollout import Rollout
from agents.update import (
    MetricMeans,
    clipped_surrogate,
    epoch_orders,
    forward,
    is_one_step,
    minibatch_size_of,
    minibatches,
    old_from_step,
    recompute,
    rollout_batch,
)


@dataclass
class RLOOConfig(GroupConfig):
    """RLOO settings (and those of :class:`~agents.groups.GroupConfig` and
    :class:`~agents.base.LearnerConfig`).

    Attributes:
        kl_coef: weight of the sequence-level KL penalty in the reward.
        scale_advantages: divide the advantages by their standard deviation over the batch (not
            centred: the leave-one-out baseline centres them).
    """

    lr: float = 5e-5
    kl_coef: float = 0.05
    scale_advantages: bool = False


class RLOO(Learner):
    """REINFORCE leave-one-out; see the module docstring."""

    Config = RLOOConfig
    config: RLOOConfig

    def update(self, rollout: Rollout) -> dict[str, float]:
        c = self.config
        metrics: dict[str, float] = {}
        if c.drop_flat_groups:
            rollout, metrics = informative_groups(self, rollout)
            if rollout is None:  # no group carries a signal: no update
                return metrics
        batch = rollout_batch(rollout, self.policy.device)
        mask, n = batch["mask"], rollout.num_envs
        size = minibatch_size_of(n, c.minibatch_size)
        orders = epoch_orders(self.rng, n, c.minibatch_size, c.update_epochs)

        # The reference's and the old log-probs: the reward's KL penalty needs both. Without a
        # penalty, a single full-batch step takes the old log-probs from its own forward.
        reference = self.uses_reference()
        defer = is_one_step(orders, c.minibatch_size) and not reference
        metrics.update(
            recompute(
                self.policy,
                batch,
                rollout.prompt_len,
                orders[0],
                size,
                reference=reference,
                kl_estimator=c.kl_estimator,
                old=not defer,
            )
        )

        # Advantages: the KL-penalised return against the other members of the group.
        rewards = batch["episode_returns"] - self.kl_coef * batch["kl"].sum(-1)
        advantages = group_advantages(rewards, self.group_size, "loo")
        if c.scale_advantages:
            advantages = scale_by_std(advantages, torch.ones_like(advantages))
        batch["advantages"] = advantages[:, None] * mask

        means = MetricMeans()
        for order in orders:
            for _, mb, mb_prompt_len in minibatches(batch, rollout.prompt_len, order, size):
                stats = forward(self.policy, mb, mb_prompt_len)
                if defer:
                    metrics.update(old_from_step(mb, stats))
                pg_loss, step = clipped_surrogate(
                    stats, mb["old_logprobs"], mb["advantages"], c.clip_range
                )
                entropy = masked_mean(stats.entropies, stats.mask)
                loss = pg_loss - c.ent_coef * entropy
                self.optimizer_step(loss)
                means.add(
                    {
                        **step,
                        "pg_loss": pg_loss.item(),
                        "entropy": entropy.item(),
                        "loss": loss.item(),
                    }
                )
        metrics.update(means.means(), epochs=len(orders), stopped_early=0.0)
        return metrics

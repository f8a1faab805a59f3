"""GRPO: several completions per prompt, the group as the baseline, no value head.

Each rollout draws ``num_envs / group_size`` prompts and completes each ``group_size`` times
(the slots of a group are reset with the same seed).

**GRPO** (Shao et al., 2024): ``A = (return - group mean) / group std`` on every token of the
completion; the KL to the reference is a loss term (``kl_coef * k3``), not part of the reward;
PPO's clipped surrogate. (RLOO, the leave-one-out twin: ``rloo.py``.)

GRPO's loss aggregation (``GRPOConfig.loss_type``), applied to the per-token clipped surrogate
plus the KL term:

* ``"token"`` (default): the mean over all completion tokens of the minibatch (DAPO's, TRL's
  ``"dapo"``/``"bnpo"``): every token weighs the same, so longer completions weigh more.
* ``"sequence"``: the mean over each completion's tokens, then over completions (the GRPO paper's
  ``1/G sum_i 1/|o_i| sum_t``): every completion weighs the same, so a token of a short one weighs
  more (the length bias Dr. GRPO points out).
* ``"dr_grpo"`` (Liu et al., 2025, "Understanding R1-Zero-Like Training"): the sum over tokens
  divided by a constant, ``sequences x max_new_tokens``, and advantages not divided by the
  group's std (``scale_rewards`` then defaults to False; True is refused).

The entropy bonus is a token mean in all three.

**The KL term's gradient.** The tokens are sampled from the policy, so the gradient of the
sampled ``k3`` alone, ``E_pi[(1 - ref/pi) dlog pi]``, is the gradient of KL(ref || pi), not of
KL(pi || ref) which ``k3`` estimates; the two agree to first order near the reference.
``kl_bias_correction=True`` multiplies each token's term by ``pi / pi_old`` (1 in value), which
adds ``k3 * dlog pi`` and makes it the gradient of KL(pi || ref) (TRL's ``use_bias_correction_kl``,
on by default in TRL 1.x; off here by default, as in the GRPO paper).

Flat groups (``drop_flat_groups``) and the group settings GRPO shares with RLOO: ``groups.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.advantages import group_advantages, kl_estimate, masked_mean
from agents.base import Learner
from agents.groups import GroupConfig, informative_groups
from agents.rollout import Rollout
from agents.update import (
    LOSS_TYPES,
    MetricMeans,
    aggregate_loss,
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
from textgym.errors import InvalidArgumentError


@dataclass
class GRPOConfig(GroupConfig):
    """GRPO settings (and those of :class:`~agents.groups.GroupConfig` and
    :class:`~agents.base.LearnerConfig`).

    The defaults work on TextGen-v0 with SmolLM2-135M and 16 envs (4 prompts x 4): 10 minutes
    on a 2-core CPU raise the test reward from 0.15 to 0.85 (KL 16 nats per completion).

    Attributes:
        scale_rewards: divide the advantages by the group's std (False: Dr. GRPO's unscaled
            variant; None: True, except False with ``loss_type="dr_grpo"``).
        kl_coef: beta of the ``k3`` KL loss term.
        kl_bias_correction: weigh each token's KL term by its importance ratio ``pi / pi_old``
            (1 in value, not in gradient; TRL's ``use_bias_correction_kl``, its default). Without
            it (the GRPO paper's loss) the term's gradient is that of KL(ref || pi); with it,
            of KL(pi || ref), the divergence the term estimates (see the module docstring).
        loss_type: how per-token losses are aggregated: ``"token"``, ``"sequence"`` or
            ``"dr_grpo"`` (see the module docstring).
    """

    lr: float = 5e-5
    scale_rewards: bool | None = None
    kl_coef: float = 0.04
    kl_estimator: str = "k3"
    kl_bias_correction: bool = False
    loss_type: str = "token"

    def check(self) -> None:
        super().check()
        name = type(self).__name__
        if self.loss_type not in LOSS_TYPES:
            raise InvalidArgumentError(
                f"{name}: loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}"
            )
        if self.loss_type == "dr_grpo" and self.scale_rewards:
            raise InvalidArgumentError(
                f"{name}: loss_type='dr_grpo' uses advantages not scaled by the group's std; "
                f"set scale_rewards=False (or leave it None)"
            )
        if not isinstance(self.kl_bias_correction, bool):
            raise InvalidArgumentError(
                f"{name}: kl_bias_correction must be True or False, got {self.kl_bias_correction!r}"
            )


class GRPO(Learner):
    """Group relative policy optimisation; see the module docstring."""

    Config = GRPOConfig
    config: GRPOConfig

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

        # The reference's log-probs (the KL loss term) and the old log-probs. The advantages use
        # neither, so a single full-batch step takes the old log-probs from its own forward
        # (agents.update.old_from_step): the same values, one forward less.
        defer = is_one_step(orders, c.minibatch_size)
        metrics.update(
            recompute(
                self.policy,
                batch,
                rollout.prompt_len,
                orders[0],
                size,
                reference=self.uses_reference(),
                kl_estimator=c.kl_estimator,
                old=not defer,
            )
        )

        # Advantages: each completion's return against its group's, on every token.
        scale = c.scale_rewards if c.scale_rewards is not None else c.loss_type != "dr_grpo"
        advantages = group_advantages(batch["episode_returns"], self.group_size, "mean", scale)
        batch["advantages"] = advantages[:, None] * mask

        horizon = mask.shape[1]

        def reduce(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return aggregate_loss(per_token, mask, c.loss_type, horizon)

        means = MetricMeans()
        for epoch, order in enumerate(orders):
            for _, mb, mb_prompt_len in minibatches(batch, rollout.prompt_len, order, size):
                if self.kl_coef and epoch > 0:
                    # Later epochs' minibatches have other shapes than recompute's: score the
                    # reference by the same forward as the policy, so that at equality the KL
                    # stays exactly 0.
                    reference = forward(
                        self.policy, mb, mb_prompt_len, entropy=False, reference=True
                    )
                    mb["ref_logprobs"] = reference.logprobs
                stats = forward(self.policy, mb, mb_prompt_len)
                if defer:
                    metrics.update(old_from_step(mb, stats))
                pg_loss, step = clipped_surrogate(
                    stats, mb["old_logprobs"], mb["advantages"], c.clip_range, reduce=reduce
                )
                step["pg_loss"] = pg_loss.item()
                loss = pg_loss
                if self.kl_coef:
                    kl = kl_estimate(stats.logprobs, mb["ref_logprobs"], c.kl_estimator)
                    if c.kl_bias_correction:
                        # The sampled tokens' ratio pi / pi_old: 1 in value; its gradient adds
                        # k3 * dlog pi (see the module docstring).
                        kl = kl * torch.exp(stats.logprobs - mb["old_logprobs"])
                    kl_loss = reduce(kl, stats.mask)
                    step["kl_loss"] = kl_loss.item()
                    loss = loss + self.kl_coef * kl_loss
                entropy = masked_mean(stats.entropies, stats.mask)
                loss = loss - c.ent_coef * entropy
                self.optimizer_step(loss)
                means.add({**step, "entropy": entropy.item(), "loss": loss.item()})
        metrics.update(means.means(), epochs=len(orders), stopped_early=0.0)
        return metrics

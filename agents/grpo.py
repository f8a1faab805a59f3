"""GRPO and RLOO: several completions per prompt, the group as the baseline, no value head.

Each rollout draws ``num_envs / group_size`` prompts and completes each ``group_size`` times
(the slots of a group are reset with the same seed). Both use the sequence score as the
advantage of every token of the completion, against a group baseline:

* **GRPO** (Shao et al., 2024): ``A = (score - group mean) / group std``; the KL to the reference
  is a loss term (``kl_coef * k3``), not part of the reward; PPO's clipped surrogate.
* **RLOO** (Ahmadian et al., 2024): the reward is ``score - kl_coef * sum_t KL_t`` (sequence
  level) and ``A = reward - mean of the other group members' rewards`` (leave-one-out, unbiased);
  a REINFORCE loss (the clipped surrogate, which equals it with one epoch and one minibatch).

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

The entropy bonus is a token mean in all three. RLOO always uses the token mean.

**The KL term's gradient.** The tokens are sampled from the policy, so the gradient of the
sampled ``k3`` alone, ``E_pi[(1 - ref/pi) dlog pi]``, is the gradient of KL(ref || pi), not of
KL(pi || ref) which ``k3`` estimates; the two agree to first order near the reference.
``kl_bias_correction=True`` multiplies each token's term by ``pi / pi_old`` (1 in value), which
adds ``k3 * dlog pi`` and makes it the gradient of KL(pi || ref) (TRL's ``use_bias_correction_kl``,
on by default in TRL 1.x; off here by default, as in the GRPO paper).

**Flat groups** (``drop_flat_groups=True``; DAPO's dynamic sampling, Yu et al., 2025): a group
whose completions all got the same score has advantage 0 for every member (RLOO judges by the
score too: its KL penalty is no task signal), so it only dilutes the update. Such groups are
dropped and more rollouts drawn (prompts from the learner's seeded RNG, as always) until the
update has its configured number of groups, ``num_envs * rollouts_per_update / group_size``, or
``max_extra_rollouts`` more rollouts were drawn; the update then uses the informative groups it
has, the first in draw order, and with none it makes no update at all (no parameter changes).
Logged: ``dropped_groups`` (flat groups among all drawn), ``rollouts_drawn`` (the update's
rollouts, the regular ones included) and ``update_groups``; ``episodes`` counts every episode
drawn. Distributed, the ranks draw until every rank has enough and all use the smallest count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents import distributed
from agents.base import Learner, LearnerConfig
from agents.ppo import clipped_surrogate
from agents.rollout import (
    Rollout,
    cat_rollouts,
    collect_rollout,
    flat_groups,
    group_advantages,
    group_rows,
    kl_estimate,
    masked_mean,
)
from agents.token_stats import TokenStats


@dataclass
class GRPOConfig(LearnerConfig):
    """GRPO settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    The defaults work on TextGen-v0 with SmolLM2-135M and 16 envs (4 prompts x 4): 10 minutes
    on a 2-core CPU raise the test reward from 0.15 to 0.85 (KL 16 nats per completion).

    Attributes:
        group_size: completions per prompt (``num_envs`` must be a multiple).
        clip_range: the ratio clip epsilon.
        scale_rewards: divide by the group's std (False: Dr. GRPO's unscaled variant; None:
            True, except False with ``loss_type="dr_grpo"``).
        kl_coef: beta of the ``k3`` KL loss term.
        kl_bias_correction: weigh each token's KL term by its importance ratio ``pi / pi_old``
            (1 in value, not in gradient; TRL's ``use_bias_correction_kl``, its default). Without
            it (the GRPO paper's loss) the term's gradient is that of KL(ref || pi); with it,
            of KL(pi || ref), the divergence the term estimates (see the module docstring).
        loss_type: how per-token losses are aggregated: ``"token"``, ``"sequence"`` or
            ``"dr_grpo"`` (see the module docstring).
        drop_flat_groups: leave out groups whose scores are all equal and draw more prompts
            instead (see the module docstring).
        max_extra_rollouts: at most this many rollouts (of ``num_envs`` episodes) drawn per
            update beyond the regular ones, with ``drop_flat_groups``.
    """

    lr: float = 5e-5
    group_size: int = 4
    clip_range: float = 0.2
    scale_rewards: bool | None = None
    kl_coef: float = 0.04
    kl_estimator: str = "k3"
    kl_bias_correction: bool = False
    loss_type: str = "token"
    drop_flat_groups: bool = False
    max_extra_rollouts: int = 4


LOSS_TYPES = ("token", "sequence", "dr_grpo")


def aggregate_loss(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_new_tokens: int
) -> torch.Tensor:
    """Reduce a ``(B, T)`` per-token loss over the ``mask``ed tokens as ``loss_type`` says
    (see the module docstring); ``max_new_tokens`` is Dr. GRPO's constant length."""
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


@dataclass
class RLOOConfig(LearnerConfig):
    """RLOO settings (and the shared ones of :class:`~agents.base.LearnerConfig`).

    Attributes:
        group_size: completions per prompt (``num_envs`` must be a multiple, >= 2).
        clip_range: the ratio clip epsilon (matters only with several epochs/minibatches).
        kl_coef: weight of the sequence-level KL penalty in the reward.
        normalize_advantages: divide the advantages by their batch std.
        drop_flat_groups, max_extra_rollouts: as in :class:`GRPOConfig`.
    """

    lr: float = 5e-5
    group_size: int = 4
    clip_range: float = 0.2
    kl_coef: float = 0.05
    normalize_advantages: bool = False
    drop_flat_groups: bool = False
    max_extra_rollouts: int = 4


class _GroupLearner(Learner):
    """The part GRPO and RLOO share: per-sequence advantages on every token, clipped surrogate."""

    def __init__(self, policy: Any, envs: Any, config: Any = None, **kwargs: Any):
        c = config if config is not None else self.Config.for_policy(policy)  # as Learner's
        name = type(self).__name__
        if int(c.group_size) < 2:  # checked before the learner copies the reference model
            raise ValueError(
                f"{name}: group_size must be >= 2, got {c.group_size}: the group is the "
                f"baseline (a group of one has no std for GRPO and no other members for RLOO); "
                f"set {type(c).__name__}(group_size=4) or use PPO/REINFORCE for one sample per "
                f"prompt"
            )
        loss_type = getattr(c, "loss_type", "token")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"{name}: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        if loss_type == "dr_grpo" and getattr(c, "scale_rewards", None):
            raise ValueError(
                f"{name}: loss_type='dr_grpo' uses advantages not scaled by the group's std; "
                f"set scale_rewards=False (or leave it None)"
            )
        correction = getattr(c, "kl_bias_correction", False)
        if not isinstance(correction, bool):
            raise ValueError(
                f"{name}: kl_bias_correction must be True or False, got {correction!r}"
            )
        extra = c.max_extra_rollouts
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise ValueError(f"{name}: max_extra_rollouts must be an integer >= 0, got {extra!r}")
        super().__init__(policy, envs, c, **kwargs)

    kl_in_loss = False  # GRPO: the KL to the reference is a loss term, scored per minibatch

    def advantages_use_policy(self) -> bool:
        # Sequence scores only, unless the KL penalty is part of the reward (RLOO's).
        return not self.kl_in_loss and self.uses_reference()

    def sequence_advantages(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def kl_loss(
        self, mb: dict[str, torch.Tensor], stats: TokenStats, reduce: Any = masked_mean
    ) -> torch.Tensor | None:
        return None

    def update(self, rollout: Rollout) -> dict[str, float]:
        c = self.config
        metrics: dict[str, float] = {}
        if c.drop_flat_groups:
            rollout, metrics = self.informative_groups(rollout)
            if rollout is None:  # no group carries a signal: no update
                return metrics
        batch, prepared = self.prepare(rollout)
        metrics.update(prepared)
        batch["advantages"] = self.sequence_advantages(batch)[:, None] * batch["mask"]
        loss_type, horizon = getattr(c, "loss_type", "token"), batch["mask"].shape[1]

        def reduce(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return aggregate_loss(per_token, mask, loss_type, horizon)

        def loss_fn(mb: dict[str, torch.Tensor], stats: TokenStats):
            loss, out = clipped_surrogate(
                stats, mb["old_logprobs"], mb["advantages"], c.clip_range, reduce=reduce
            )
            out["pg_loss"] = loss.item()
            kl = self.kl_loss(mb, stats, reduce)
            if kl is not None:
                out["kl_loss"] = kl.item()
                loss = loss + self.kl_coef * kl
            entropy = masked_mean(stats.entropies, stats.mask)
            out["entropy"] = entropy.item()
            return loss - c.ent_coef * entropy, out

        reference_in_loss = self.kl_in_loss and bool(self.kl_coef)
        metrics.update(
            self.gradient_epochs(
                batch, rollout.prompt_len, loss_fn, reference_in_loss=reference_in_loss
            )
        )
        return metrics

    def informative_groups(self, rollout: Rollout) -> tuple[Rollout | None, dict[str, float]]:
        """``rollout`` without its flat groups, topped up with the informative groups of more
        rollouts (see the module docstring); None when no group is informative."""
        c, size, world = self.config, self.group_size, self.dist.world_size
        wanted = rollout.num_envs // size
        flat = flat_groups(rollout.scores, size)
        parts, dropped = [rollout.subset(group_rows(~flat, size))], int(flat.sum())
        have, drawn = wanted - dropped, self.rollouts_per_update
        cap = self.rollouts_per_update + c.max_extra_rollouts
        while drawn < cap and distributed.any_rank(have < wanted):
            more = collect_rollout(
                self.acting_policy(),
                self.envs,
                seeds=self._rollout_seeds(),
                split=c.train_split,
                generator=self.generator,
            )
            drawn += 1
            self.episodes += more.num_envs * world
            tokens = distributed.mean_over_ranks({"tokens": more.num_tokens})["tokens"]
            self.tokens += round(tokens * world)
            if distributed.any_rank(not torch.isfinite(more.rewards).all()):
                self._nonfinite("reward")
                have = 0
                break
            flat = flat_groups(more.scores, size)
            parts.append(more.subset(group_rows(~flat, size)))
            dropped, have = dropped + int(flat.sum()), have + int((~flat).sum())
        used = min(distributed.gather_objects(min(have, wanted)))  # the same on every rank
        metrics = {
            "dropped_groups": dropped,
            "rollouts_drawn": drawn,
            "update_groups": used,
            "episodes": self.episodes,
        }
        if not used:
            return None, metrics
        return cat_rollouts(parts).subset(torch.arange(used * size)), metrics


class GRPO(_GroupLearner):
    """Group relative policy optimisation; see the module docstring."""

    Config = GRPOConfig
    config: GRPOConfig
    kl_in_loss = True

    def sequence_advantages(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        scale = c.scale_rewards if c.scale_rewards is not None else c.loss_type != "dr_grpo"
        return group_advantages(batch["scores"], self.group_size, "mean", scale)

    def kl_loss(
        self, mb: dict[str, torch.Tensor], stats: TokenStats, reduce: Any = masked_mean
    ) -> torch.Tensor | None:
        if not self.kl_coef:
            return None
        kl = kl_estimate(stats.logprobs, mb["ref_logprobs"], self.config.kl_estimator)
        if self.config.kl_bias_correction:
            # The sampled tokens' ratio pi / pi_old: 1 in value, its gradient adds k3 * dlog pi.
            kl = kl * torch.exp(stats.logprobs - mb["old_logprobs"])
        return reduce(kl, stats.mask)


class RLOO(_GroupLearner):
    """REINFORCE leave-one-out; see the module docstring."""

    Config = RLOOConfig
    config: RLOOConfig

    def sequence_advantages(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rewards = batch["scores"] - self.kl_coef * batch["kl"].sum(-1)
        advantages = group_advantages(rewards, self.group_size, "loo")
        if self.config.normalize_advantages:
            advantages = advantages / (advantages.std() + 1e-8)
        return advantages

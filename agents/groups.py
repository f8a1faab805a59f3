"""What GRPO and RLOO share: groups of completions of one prompt, and dropping flat groups.

Each rollout draws ``num_envs / group_size`` prompts and completes each ``group_size`` times (the
slots of a group are reset with the same seed; :meth:`agents.base.Learner.rollout`). The group is
the baseline: its members' returns are compared with each other
(:func:`agents.advantages.group_advantages`).

**Flat groups** (``drop_flat_groups=True``; DAPO's dynamic sampling, Yu et al., 2025): a group
whose completions all got the same return has advantage 0 for every member (RLOO judges by the
return too: its KL penalty is no task signal), so it only dilutes the update.
:func:`informative_groups` drops such groups and draws more rollouts (prompts from the learner's
seeded RNG, as always) until the update has its configured number of groups,
``num_envs * rollouts_per_update / group_size``, or ``max_extra_rollouts`` more rollouts were
drawn; the update then uses the informative groups it has, the first in draw order, and with
none it makes no update at all (no parameter changes). Logged: ``dropped_groups`` (flat groups
among all drawn), ``rollouts_drawn`` (the update's rollouts, the regular ones included) and
``update_groups``; ``episodes`` counts every episode drawn. Distributed, the ranks draw until
every rank has enough and all use the smallest count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents import distributed
from agents.advantages import flat_groups, group_rows
from agents.base import LearnerConfig
from agents.faults import count_failures, fault_counts
from agents.rollout import Rollout, cat_rollouts
from textgym.errors import InvalidArgumentError


@dataclass
class GroupConfig(LearnerConfig):
    """The settings of a group learner (GRPO, RLOO) beyond :class:`~agents.base.LearnerConfig`.

    Attributes:
        group_size: completions per prompt (``num_envs`` must be a multiple; at least 2).
        clip_range: the ratio clip epsilon (matters only with several epochs or minibatches).
        drop_flat_groups: leave out groups whose returns are all equal and draw more prompts
            instead (see the module docstring).
        max_extra_rollouts: at most this many rollouts (of ``num_envs`` episodes) drawn per
            update beyond the regular ones, with ``drop_flat_groups``.
    """

    group_size: int = 4
    clip_range: float = 0.2
    drop_flat_groups: bool = False
    max_extra_rollouts: int = 4

    def check(self) -> None:
        super().check()
        name = type(self).__name__
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int):
            raise InvalidArgumentError(
                f"{name}: group_size must be an integer, got {self.group_size!r}"
            )
        if self.group_size < 2:
            raise InvalidArgumentError(
                f"{name}: group_size must be >= 2, got {self.group_size}: the group is the "
                f"baseline (a group of one has no std for GRPO and no other members for RLOO); "
                f"set {name}(group_size=4) or use PPO/REINFORCE for one sample per prompt"
            )
        extra = self.max_extra_rollouts
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise InvalidArgumentError(
                f"{name}: max_extra_rollouts must be an integer >= 0, got {extra!r}"
            )


def informative_groups(learner: Any, rollout: Rollout) -> tuple[Rollout | None, dict[str, float]]:
    """``rollout`` without its flat groups, topped up with the informative groups of more
    rollouts of ``learner`` (see the module docstring); None when no group is informative.
    Counts the extra episodes and tokens in the learner's counters."""
    c, size, world = learner.config, learner.group_size, learner.dist.world_size
    # The update's configured number of groups (``rollout`` may have lost failed ones).
    wanted = learner.num_envs * learner.rollouts_per_update // size
    flat = flat_groups(rollout.episode_returns, size)
    parts, dropped = [rollout.subset(group_rows(~flat, size))], int(flat.sum())
    have, drawn = rollout.num_envs // size - dropped, learner.rollouts_per_update
    cap = learner.rollouts_per_update + c.max_extra_rollouts
    while drawn < cap and distributed.any_rank(have < wanted):
        counts_before = fault_counts(learner.envs)
        more = learner.rollout()
        drawn += 1
        learner.episodes += more.num_envs * world
        tokens = distributed.mean_over_ranks({"tokens": more.num_tokens})["tokens"]
        learner.tokens += round(tokens * world)
        if distributed.any_rank(not torch.isfinite(more.rewards).all()):
            learner._nonfinite("reward")
            have = 0
            break
        count_failures(learner, more, counts_before)  # counted; may stop the run
        # A group with a failed member is dropped too (its baseline would lack a member).
        flat = flat_groups(more.episode_returns, size)
        if more.failed is not None:
            flat = flat | more.failed.view(-1, size).any(-1)
        parts.append(more.subset(group_rows(~flat, size)))
        dropped, have = dropped + int(flat.sum()), have + int((~flat).sum())
    used = min(distributed.gather_objects(min(have, wanted)))  # the same on every rank
    metrics = {
        "dropped_groups": dropped,
        "rollouts_drawn": drawn,
        "update_groups": used,
        "episodes": learner.episodes,
    }
    if not used:
        return None, metrics
    return cat_rollouts(parts).subset(torch.arange(used * size)), metrics

"""Failed episodes in training: counted, left out of the update, and a stop past a rate.

An env made with ``on_failure="end_episode"`` ends an episode as failed when a scorer, partner or
tool call still fails after the env's :class:`textgym.RetryPolicy` (``info["failed"]``; its reward
of 0 is a placeholder, not a score). A rollout records which episodes failed
(:attr:`agents.rollout.Rollout.failed`); :meth:`agents.base.Learner.train_iteration` then

* counts them (:func:`count_failures`): ``failed_episodes`` per iteration and, from the env's
  ``fault_counts``, ``retries`` and ``timeouts``; ``Learner.failed_episodes`` for the run (in
  checkpoints); more than ``max_failure_rate`` of an iteration's episodes failed raises
  :class:`FailureRateError` before that iteration's update;
* leaves them out (:func:`without_failed`) before the update sees the rollout: a group learner
  loses the whole group of a failed episode (its baseline would come from fewer members), and
  every rank keeps the same number of episodes (their gradient steps run together).
"""

from __future__ import annotations

from typing import Any

import torch

from agents import distributed
from agents.rollout import Rollout


class FailureRateError(RuntimeError):
    """More than ``max_failure_rate`` of an iteration's episodes failed."""


def fault_counts(envs: Any) -> Any:
    """A copy of the env's :class:`textgym.FaultCounts` so far (None if it keeps none)."""
    for env in (envs, getattr(envs, "unwrapped", None)):
        counts = getattr(env, "fault_counts", None)
        if counts is not None:
            return counts.copy() if hasattr(counts, "copy") else counts
    return None


def count_failures(learner: Any, rollout: Rollout, counts_before: Any) -> None:
    """Add ``rollout``'s failed episodes (and the env's retries and timeouts since
    ``counts_before``) to the learner's run and iteration counts; raise
    :class:`FailureRateError` past ``max_failure_rate`` (decided on all ranks' counts)."""
    failed = int(rollout.failed.sum()) if rollout.failed is not None else 0
    totals = distributed.mean_over_ranks({"failed": failed, "n": rollout.num_envs})
    world = learner.dist.world_size
    learner.failed_episodes += round(totals["failed"] * world)
    faults = learner.iteration_faults
    faults["failed_episodes"] = faults.get("failed_episodes", 0) + totals["failed"] * world
    if counts_before is not None:
        diff = fault_counts(learner.envs) - counts_before
        faults["retries"] = faults.get("retries", 0) + diff.retries
        faults["timeouts"] = faults.get("timeouts", 0) + diff.timeouts
    rate = totals["failed"] / max(totals["n"], 1)
    limit = learner.config.max_failure_rate
    if rate > limit:
        reasons = [f for f in rollout.failures or [] if f is not None]
        raise FailureRateError(
            f"iteration {learner.iteration}: {rate:.0%} of the episodes failed, more than "
            f"max_failure_rate={limit:.0%}"
            + (f"; the last failure: {reasons[-1]}" if reasons else "")
            + "; fix the scorer, partner or tool, give the env a retry policy with more "
            "retries or a longer timeout, or raise max_failure_rate"
        )


def without_failed(rollout: Rollout, group_size: int) -> Rollout:
    """``rollout`` without its failed episodes (with ``group_size > 1``: without the groups that
    have one), cut to the same number of episodes on every rank."""
    if rollout.failed is None or not distributed.any_rank(bool(rollout.failed.any())):
        return rollout
    healthy = ~rollout.failed.view(-1, group_size).any(-1)
    rows = torch.nonzero(healthy.repeat_interleave(group_size)).reshape(-1)
    count = min(distributed.gather_objects(len(rows)))  # the same on every rank
    return rollout.subset(rows[:count])

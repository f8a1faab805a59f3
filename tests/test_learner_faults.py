"""Training runs that survive failing episodes: every learner leaves them out and counts them.

The env ends an episode as failed when its scorer still fails after the retry policy
(``on_failure="end_episode"``; tests/test_env_faults.py covers the env side). Here the scorer
fails by content (a CRC of the completion), so the injected faults are known, the same on every
run, and a resumed run meets the same ones as a straight run.
"""

from __future__ import annotations

import sys
import time
import zlib

import numpy as np
import pytest
import torch
from test_agents_helpers import fraction_of_a, make_envs, make_policy, one_thread  # noqa: F401

import agents
from agents import A2C, GRPO, NLPO, PPO, REINFORCE, RLOO, FailureRateError
from textgym import RetryPolicy

RETRY = RetryPolicy(retries=1, backoff=0.0, timeout=0.2)


def injected(completion: str, share: int = 20) -> str | None:
    """The fault :class:`ContentFaults` injects for ``completion``: ``"raise"`` for ``share`` % of
    completions, ``"hang"`` (past the timeout) for 8 % more, else None."""
    k = zlib.crc32(completion.encode()) % 100
    return "raise" if k < share else "hang" if k < share + 8 else None


class ContentFaults:
    """The frac-a scorer, failing on the completions :func:`injected` names, every time."""

    def __init__(self, share: int = 20):
        self.share = share

    def __call__(self, prompts, completions, references):
        for text in completions:
            fault = injected(text, self.share)
            if fault == "raise":
                raise ConnectionError("judge unreachable")
            if fault == "hang":
                time.sleep(0.5)  # past the 0.2 s timeout: abandoned, its answer discarded
        return fraction_of_a(prompts, completions, references)


def faulty_envs(share: int = 20, num_envs: int = 8):
    return make_envs(num_envs, scorer=ContentFaults(share), retry=RETRY, on_failure="end_episode")


COMMON = dict(lr=3e-3, seed=0, progress=False)
LEARNERS = {
    "REINFORCE": (REINFORCE, {}),
    "A2C": (A2C, {}),
    "PPO": (PPO, {"minibatch_size": 4}),
    "GRPO": (GRPO, {"group_size": 4, "kl_coef": 0.01}),
    "GRPO-refill": (GRPO, {"group_size": 2, "drop_flat_groups": True}),
    "RLOO": (RLOO, {"group_size": 2}),
    "NLPO": (NLPO, {"minibatch_size": 4}),
}


def record(agent, monkeypatch) -> tuple[list, list]:
    """Every rollout the agent draws, and every rollout its updates train on (what the learner
    module's ``rollout_batch`` is given; NLPO's update is PPO's)."""
    drawn, trained = [], []
    rollout = agent.rollout

    def drawing():
        drawn.append(rollout())
        return drawn[-1]

    monkeypatch.setattr(agent, "rollout", drawing)
    module = agents.ppo if type(agent) is NLPO else sys.modules[type(agent).__module__]
    batch_of = module.rollout_batch

    def recording(ro, device):
        trained.append(ro)
        return batch_of(ro, device)

    monkeypatch.setattr(module, "rollout_batch", recording)
    return drawn, trained


@pytest.mark.parametrize("name", list(LEARNERS))
def test_failed_episodes_are_counted_and_never_reach_the_loss(name, monkeypatch):
    cls, settings = LEARNERS[name]
    envs = faulty_envs()
    # max_failure_rate: a group of one prompt's completions can fail together (the threshold's
    # own test is below)
    config = cls.Config(**COMMON, **settings, max_failure_rate=0.9)
    agent = cls(make_policy(), envs, config)
    drawn, trained = record(agent, monkeypatch)
    agent.learn(iterations=3)

    # Counted: the failed episodes are exactly the injected faults, in every count.
    completions = [c for ro in drawn for c in ro.completions]
    faults = sum(injected(c) is not None for c in completions)
    assert faults > 0
    assert agent.failed_episodes == faults == sum(int(ro.failed.sum()) for ro in drawn)
    assert sum(row["failed_episodes"] for row in agent.history) == faults
    assert envs.fault_counts.failed_episodes == faults
    # Each hung episode's scoring timed out at least once (alone, if not in its batch).
    hangs = sum(injected(c) == "hang" for c in completions)
    assert sum(row["timeouts"] for row in agent.history) >= hangs
    assert agent.episodes == len(completions)

    # Left out: no update saw a failed episode; a group learner trains on whole groups.
    assert trained and all(ro.num_envs > 0 for ro in trained)
    for ro in trained:
        assert not ro.failed.any()
        assert all(injected(c) is None for c in ro.completions)
        if agent.group_size > 1:
            assert ro.num_envs % agent.group_size == 0
            prompts = np.array(ro.prompts).reshape(-1, agent.group_size)
            assert (prompts == prompts[:, :1]).all()
    assert agent.skipped_updates == 0
    # The logged reward averages the healthy episodes: NaN only when none was left.
    assert all(np.isfinite(row["reward"]) or row["failed_episodes"] for row in agent.history)


def test_a_run_with_failures_resumes_exactly(tmp_path):
    config = PPO.Config(**COMMON, minibatch_size=4, checkpoint_dir=str(tmp_path))
    straight = PPO(make_policy(), faulty_envs(), config)
    straight.learn(iterations=4)

    first = PPO(make_policy(), faulty_envs(), config)
    first.learn(iterations=2)
    resumed = PPO(make_policy(), faulty_envs(), config).resume()
    assert resumed.failed_episodes == first.failed_episodes > 0
    resumed.learn(iterations=2)
    assert resumed.failed_episodes == straight.failed_episodes
    for (name, a), b in zip(
        straight.policy.state_dict().items(), resumed.policy.state_dict().values()
    ):
        assert torch.equal(a, b), name


def test_past_the_failure_rate_the_run_stops_clearly_before_any_update():
    policy = make_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    agent = GRPO(policy, faulty_envs(share=100), GRPO.Config(**COMMON, group_size=4))
    with pytest.raises(FailureRateError) as stop:
        agent.learn(iterations=2)
    message = str(stop.value)
    assert "iteration 1: 100% of the episodes failed, more than max_failure_rate=50%" in message
    assert "the last failure: ConnectionError: judge unreachable" in message
    assert agent.failed_episodes == 8 and agent.iteration == 1
    for name, value in policy.state_dict().items():
        assert torch.equal(value, before[name]), name
    with pytest.raises(ValueError, match="max_failure_rate must be a number in"):
        GRPO.Config(max_failure_rate=1.5)

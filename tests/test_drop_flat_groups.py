"""GRPO/RLOO with ``drop_flat_groups``: groups whose completions all scored the same carry no
signal; the update leaves them out and draws more prompts, up to ``max_extra_rollouts``."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_agents_helpers import make_policy, one_thread  # noqa: F401

import textgym  # noqa: F401
from agents import GRPO, RLOO, GRPOConfig, RLOOConfig
from agents.advantages import flat_groups, group_rows
from textgym.tasks import PromptSet, Task

FLAT = ["abc", "hello", "xyz", "dog"]  # every completion of these scores 0.5
INFORMATIVE = ["say a", "the cat", "q", "aaaa b"]  # scores that differ between completions
NUM_ENVS, GROUP = 8, 4  # two groups per rollout
LEARNERS = {"GRPO": (GRPO, GRPOConfig), "RLOO": (RLOO, RLOOConfig)}


def flat_for_some(prompts, completions, references):
    return np.array(
        [0.5 if p in FLAT else sum(map(ord, c)) % 97 / 97 for p, c in zip(prompts, completions)],
        dtype=np.float32,
    )


def always_flat(prompts, completions, references):
    return np.zeros(len(prompts), dtype=np.float32)


def make_agent(name: str, scorer, **config):
    cls, config_cls = LEARNERS[name]
    task = Task("flat-or-not", PromptSet.from_list(FLAT + INFORMATIVE), scorer)
    envs = gym.make_vec(
        "TextGen-v0", num_envs=NUM_ENVS, task=task, tokenizer="char", max_new_tokens=6
    )
    settings = dict(seed=0, lr=1e-3, progress=False, group_size=GROUP, drop_flat_groups=True)
    return cls(make_policy(), envs, config_cls(**{**settings, **config}))


def record_updates(agent) -> list:
    """The rollouts each update trains on (what its ``rollout_batch`` is given), recorded
    through the learner module's ``rollout_batch`` for this agent only."""
    seen = []
    module = sys.modules[type(agent).__module__]
    batch_of = module.rollout_batch
    update = agent.update

    def recording_update(rollout):
        def recording(rollout, device):
            seen.append(rollout)
            return batch_of(rollout, device)

        module.rollout_batch = recording
        try:
            return update(rollout)
        finally:
            module.rollout_batch = batch_of

    agent.update = recording_update
    return seen


def test_flat_groups_and_their_rows():
    scores = torch.tensor([1.0, 1, 0, 1, 0, 0, 0.5, 0.5])
    assert flat_groups(scores, 2).tolist() == [True, False, True, True]
    assert group_rows(torch.tensor([False, True, False, True]), 2).tolist() == [2, 3, 6, 7]
    assert group_rows(torch.zeros(4, dtype=torch.bool), 2).tolist() == []


@pytest.mark.parametrize("name", list(LEARNERS))
def test_updates_use_only_informative_groups_and_get_their_number(name):
    agent = make_agent(name, flat_for_some, max_extra_rollouts=8)
    updates = record_updates(agent)
    agent.learn(iterations=4)
    assert len(updates) == 4
    for rollout in updates:
        assert rollout.num_envs == NUM_ENVS  # the configured number of groups
        assert not flat_groups(rollout.episode_returns, GROUP).any()
        assert set(rollout.prompts) <= set(INFORMATIVE)
        for g in range(NUM_ENVS // GROUP):  # a group is whole: one prompt, GROUP completions
            assert len(set(rollout.prompts[g * GROUP : (g + 1) * GROUP])) == 1
    rows = agent.history
    assert all(r["update_groups"] == NUM_ENVS // GROUP for r in rows)
    assert sum(r["dropped_groups"] for r in rows) > 0  # some flat groups were met and dropped
    drawn = sum(r["rollouts_drawn"] for r in rows)
    assert drawn > len(rows) and agent.episodes == rows[-1]["episodes"] == drawn * NUM_ENVS


@pytest.mark.parametrize("name", list(LEARNERS))
def test_all_flat_rewards_stop_at_the_cap_and_change_nothing(name):
    agent = make_agent(name, always_flat, max_extra_rollouts=2, weight_decay=0.1)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    updates = record_updates(agent)
    agent.learn(iterations=2)
    assert updates == []  # nothing to learn from: no update at all
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(value, before[key]), key
    for row in agent.history:
        assert row["rollouts_drawn"] == 1 + 2  # the regular rollout and the cap's two
        assert row["dropped_groups"] == 3 * NUM_ENVS // GROUP and row["update_groups"] == 0
    assert agent.episodes == 2 * 3 * NUM_ENVS


def test_resume_equals_a_straight_run(tmp_path):
    def agent(folder):
        return make_agent("GRPO", flat_for_some, checkpoint_dir=str(tmp_path / folder))

    straight = agent("a").learn(iterations=4)
    agent("b").learn(iterations=2)
    resumed = agent("b").resume(tmp_path / "b")
    resumed.learn(iterations=2)
    assert resumed.episodes == straight.episodes
    for (key, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), key
    for a, b in zip(straight.history[2:], resumed.history):
        assert (a["loss"], a["dropped_groups"]) == (b["loss"], b["dropped_groups"])

"""``evaluate``'s figures never claim the impossible: a reward CI inside the reward's bounds, a
KL estimate that is never negative."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from agents import LMPolicy, evaluate
from agents.evaluation import bootstrap_interval
from textgym.models import tiny_lm
from textgym.tasks import PromptSet, Task


def first_of_each_batch(prompts, completions, references):
    """1 for the first episode of a batch, 0 for the others: a reward in [0, 1], mostly 0."""
    return np.array([1.0] + [0.0] * (len(completions) - 1), dtype=np.float32)


def envs(num_envs: int = 8):
    prompts = PromptSet.from_list(["abc", "hello", "xyz"], test=["test one", "test two"])
    task = Task("first", prompts, first_of_each_batch, reward_range=(0.0, 1.0))
    return gym.make_vec(
        "TextGen-v0", num_envs=num_envs, task=task, tokenizer="char", max_new_tokens=4
    )


def test_a_rare_success_gets_a_ci_inside_0_1():
    vec = envs()
    policy = LMPolicy(tiny_lm(vocab_size=int(vec.single_action_space.n), seed=0), precision="fp32")
    result = evaluate(policy, vec, n_episodes=8)  # rewards 1, 0, 0, 0, 0, 0, 0, 0
    assert result.reward_mean == 0.125
    lo, hi = result.reward_ci
    assert 0.0 <= lo <= result.reward_mean <= hi <= 1.0  # mean -+ 1.96 s/sqrt(n) goes below 0
    assert bootstrap_interval(np.array([0.0, 0, 0, 1])) == bootstrap_interval(
        np.array([0.0, 0, 0, 1])
    )  # seeded
    assert bootstrap_interval(np.array([0.5])) == (0.5, 0.5)


def test_kl_is_never_negative_and_names_its_estimator():
    vec = envs(1)
    policy = LMPolicy(tiny_lm(vocab_size=int(vec.single_action_space.n), seed=0), precision="fp32")
    policy.ensure_reference()
    with torch.no_grad():  # a small step away from the reference
        for p in policy.model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.02)
    kls = [evaluate(policy, vec, n_episodes=1, seed=seed).kl for seed in range(12)]
    assert all(kl >= 0.0 for kl in kls) and max(kls) > 0.0, kls
    assert "KL (k3)" in str(evaluate(policy, vec, n_episodes=1))

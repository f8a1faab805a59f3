"""Supervised warm start: references encoded as the env encodes them; behaviour cloning raises
the reward; warm start + PPO vs PPO alone at the same RL budget."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import (
    PPO,
    LMPolicy,
    PPOConfig,
    SupervisedWarmStart,
    WarmStartConfig,
    evaluate,
    warm_start,
)
from agents.warm_start import reference_batch

COPY = "TextGen-Copy-v0"


def copy_envs(num_envs: int = 32) -> gym.vector.VectorEnv:
    return gym.make_vec(COPY, num_envs=num_envs)


def test_reference_batch_uses_the_env_encoding():
    envs = copy_envs(2)
    batch, P = reference_batch(envs, "train")
    obs, info = envs.reset(seed=0)
    k = int(info["prompt_index"][0])
    core = envs.unwrapped.core
    # The prompt part is exactly the env's observation of that prompt.
    np.testing.assert_array_equal(batch["input_ids"][k, :P].numpy(), obs["input_ids"][0, :P])
    np.testing.assert_array_equal(
        batch["attention_mask"][k, :P].numpy(), obs["attention_mask"][0, :P]
    )
    example = core.bank("train").examples[k]
    n = len(example.reference) + 1
    completion = batch["input_ids"][k, P : P + n].tolist()
    assert core.tokenizer.decode(completion[:-1]) == example.reference
    assert completion[-1] == core.eos_id and batch["mask"][k].sum() == n
    with pytest.raises(ValueError, match="reference"):
        reference_batch(make_envs(2))  # a task without references


def test_warm_start_raises_the_reward_and_helps_ppo():
    """Untrained ~0.015. Warm start (3 epochs on 512 references, ~2 s) -> well above it; PPO
    for 12 iterations x 32 episodes from the warm start ends above PPO alone."""
    untrained = evaluate(make_policy(), copy_envs(), n_episodes=96, seed=1).reward_mean
    policy = make_policy()
    config = WarmStartConfig(epochs=3, lr=3e-3, batch_size=32, max_examples=512, seed=0)
    trainer = warm_start(policy, COPY, config)
    assert isinstance(trainer, SupervisedWarmStart) and trainer.num_examples == 512
    losses = [row["loss"] for row in trainer.history]
    assert losses[-1] < losses[0]
    warmed = evaluate(policy, copy_envs(), n_episodes=96, seed=1).reward_mean
    assert warmed >= untrained + 0.2, (untrained, warmed)

    ppo = dict(lr=1e-3, seed=0, progress=False, kl_coef=0.001, minibatch_size=16)
    both = PPO(policy, copy_envs(), PPOConfig(**ppo)).learn(iterations=12)
    alone = PPO(make_policy(), copy_envs(), PPOConfig(**ppo)).learn(iterations=12)
    both_reward = evaluate(both, copy_envs(), n_episodes=96, seed=1).reward_mean
    alone_reward = evaluate(alone, copy_envs(), n_episodes=96, seed=1).reward_mean
    assert both_reward >= alone_reward + 0.1, (both_reward, alone_reward)


def test_warm_start_is_seeded_and_refreshes_the_reference():
    results = []
    for _ in range(2):
        policy = make_policy()
        policy.ensure_reference()
        config = WarmStartConfig(epochs=1, lr=3e-3, max_examples=64, seed=3)
        results.append((warm_start(policy, COPY, config).history, policy))
    assert results[0][0] == results[1][0]
    policy = results[0][1]
    for a, b in zip(policy.model.parameters(), policy.ref_model.parameters()):
        assert torch.equal(a, b)  # the KL reference is the warmed-up model


def test_the_refreshed_reference_includes_the_position_embeddings():
    """LMPolicy.tiny adds position embeddings: the reference after a warm start is the warmed-up
    policy whole (KL 0 right after it), and the checkpoint's reference record sees the change."""
    envs = copy_envs(8)
    policy = LMPolicy.tiny(envs, seed=0)
    policy.ensure_reference()
    before = policy.reference_record()["fingerprint"]
    warm_start(policy, COPY, WarmStartConfig(epochs=1, lr=3e-3, max_examples=64, seed=3))
    assert torch.equal(policy.position_embeddings.steps.weight, policy.ref_positions.steps.weight)
    result = evaluate(policy, envs, n_episodes=16, seed=1)
    assert abs(result.kl) < 1e-6, result.kl
    after = policy.reference_record()["fingerprint"]
    assert after != before
    # Position tables alone are enough to change the record.
    with torch.no_grad():
        policy.ref_positions.steps.weight[0, 0] += 1.0
    assert policy.reference_record()["fingerprint"] != after

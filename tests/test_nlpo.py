"""NLPO-style masking: the masked log-prob path matches the naive math, masked tokens are never
sampled, the update scores the distributions the rollout sampled from, it learns the tiny task;
and the LoRA learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agents_helpers import VOCAB, make_envs, make_policy, one_thread  # noqa: F401

from agents import NLPO, PPO, LMPolicy, NLPOConfig, PPOConfig, evaluate
from agents.nlpo import MaskedActing
from agents.sampling import top_p_mask
from agents.token_stats import pack_support, token_logprobs, unpack_support

COMMON = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.001, minibatch_size=4)


def test_top_p_mask():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    assert top_p_mask(logits, 0.7).tolist() == [[True, True, False, False], [True] + [False] * 3]
    assert top_p_mask(logits, 1.0).all()


def test_pack_support_round_trips():
    support = torch.rand(3, 5, 1003, generator=torch.Generator().manual_seed(0)) < 0.3
    packed = pack_support(support)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 5, 126)
    assert torch.equal(unpack_support(packed, 1003), support)


@pytest.mark.parametrize("with_bias", [False, True])  # the custom backward / the checkpointed path
def test_token_logprobs_over_a_support_match_the_naive_masked_softmax(with_bias):
    gen = torch.Generator().manual_seed(0)
    vocab, rows = 301, 13
    hidden = torch.randn(rows, 16, generator=gen, requires_grad=True)
    weight = torch.randn(vocab, 16, generator=gen, requires_grad=True)
    bias = torch.randn(vocab, generator=gen) if with_bias else None
    support = torch.rand(rows, vocab, generator=gen) < 0.2
    targets = torch.multinomial(support.float(), 1, generator=gen).squeeze(-1)  # inside support
    logp, ent = token_logprobs(
        hidden,
        weight,
        targets,
        bias=bias,
        temperature=0.7,
        chunk_size=4,
        support=pack_support(support),
    )
    logits = (hidden @ weight.T + (0 if bias is None else bias)) / 0.7
    ref_all = torch.log_softmax(logits.masked_fill(~support, float("-inf")), -1)
    ref_logp = ref_all.gather(-1, targets[:, None]).squeeze(-1)
    ref_ent = -(ref_all.exp() * ref_all.masked_fill(~support, 0.0)).sum(-1)
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    upstream = torch.randn(rows, generator=gen), torch.randn(rows, generator=gen)
    grads = torch.autograd.grad((logp * upstream[0] + ent * upstream[1]).sum(), (hidden, weight))
    ref_grads = torch.autograd.grad(
        (ref_logp * upstream[0] + ref_ent * upstream[1]).sum(), (hidden, weight)
    )
    for got, want in zip(grads, ref_grads):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # The restriction matters: the full softmax gives other (lower) log-probs.
    full, _ = token_logprobs(hidden, weight, targets, bias=bias, temperature=0.7)
    assert (full < logp - 1e-3).all()


def test_update_scores_the_distributions_the_rollout_sampled_from():
    from agents.rollout import collect_rollout

    agent = NLPO(make_policy(), make_envs(8), NLPOConfig(**COMMON, nlpo_top_p=0.5))
    rollout = collect_rollout(
        agent.acting_policy(),
        agent.envs,
        seeds=list(range(8)),
        generator=torch.Generator().manual_seed(0),
    )
    assert rollout.support is not None and rollout.support.shape[:2] == rollout.mask.shape
    support = unpack_support(rollout.support, VOCAB)
    prompt_len = rollout.prompt_len
    actions = rollout.input_ids[:, prompt_len:]
    assert support.gather(-1, actions[..., None]).squeeze(-1)[rollout.mask].all()
    assert support[rollout.mask].sum(-1).max() < 0.6 * VOCAB  # a real restriction
    with torch.no_grad():
        masked = agent.policy.token_stats(
            rollout.input_ids,
            rollout.attention_mask,
            prompt_len,
            mask=rollout.mask,
            support=rollout.support,
        )
        full = agent.policy.token_stats(
            rollout.input_ids, rollout.attention_mask, prompt_len, mask=rollout.mask
        )
    # PPO's ratios start at 1: acting and the update score the same renormalised distribution.
    torch.testing.assert_close(masked.logprobs, rollout.acting_logprobs, atol=1e-4, rtol=1e-4)
    assert (full.logprobs[rollout.mask] < masked.logprobs[rollout.mask]).all()
    assert (masked.entropies < full.entropies)[rollout.mask].all()
    metrics = agent.update(rollout)  # the masked entropies and log-probs train without NaNs
    assert all(np.isfinite(v) for v in metrics.values()), metrics


def test_masked_actions_are_never_sampled():
    agent = NLPO(make_policy(), make_envs(8), NLPOConfig(**COMMON, nlpo_top_p=0.5))
    acting = agent.acting_policy()
    assert isinstance(acting, MaskedActing)
    envs = make_envs(8)
    obs, _ = envs.reset(seed=list(range(8)))
    gen = torch.Generator().manual_seed(0)
    acting.reset_state()
    for _ in range(6):
        allowed = acting.allowed(obs).numpy()  # what the mask policy allows in this state
        acting.mask_policy.reset_state()  # (act recomputes it from the observation)
        out = acting.act(obs, generator=gen)
        assert allowed[np.arange(8), out.actions].all()
        assert torch.equal(unpack_support(out.support, VOCAB), torch.from_numpy(allowed))
        assert allowed.sum(-1).max() < allowed.shape[1] // 2  # a real restriction
        obs, *_ = envs.step(out.actions)


def test_mask_policy_is_refreshed_every_k_iterations():
    agent = NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON, nlpo_update_every=2))
    agent.learn(iterations=1)
    mask_policy = agent.mask_policy
    agent.learn(iterations=2)
    assert agent._mask_iteration == 2 and agent.mask_policy is mask_policy  # refreshed in place
    trained = dict(agent.policy.model.named_parameters())
    for name, param in mask_policy.model.named_parameters():
        assert not param.requires_grad
        assert not torch.equal(param, trained[name])  # the policy trained on for one iteration
    agent.refresh_mask_policy()
    for name, param in mask_policy.model.named_parameters():
        assert torch.equal(param, trained[name])
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
    resumed = PPO(
        LMPolicy(
            peft.get_peft_model(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64), config),
            precision="fp32",
        ),
        make_envs(),
        PPOConfig(**COMMON),
    ).resume(tmp_path)
    for (n, a), b in zip(policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), n


def test_resume_restores_the_mask_policy_exactly(tmp_path):
    """Resuming between two mask refreshes masks with the saved mask policy (not one rebuilt
    from the resumed weights), so the resumed run equals the uninterrupted one bit for bit."""
    config = dict(COMMON, nlpo_update_every=3, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    agent = NLPO(make_policy(), make_envs(), NLPOConfig(**config))
    agent.learn(iterations=4)  # mask taken at iteration 3, weights of iteration 4 saved
    assert agent._mask_iteration == 3
    resumed = NLPO(make_policy(), make_envs(), NLPOConfig(**config)).resume(tmp_path)
    assert resumed._mask_iteration == 3
    for a, b in zip(agent.mask_policy.model.parameters(), resumed.mask_policy.model.parameters()):
        assert torch.equal(a, b)
    agent.config.checkpoint_dir = resumed.config.checkpoint_dir = None
    agent.learn(iterations=2)
    resumed.learn(iterations=2)
    for (name, a), b in zip(
        agent.policy.state_dict().items(), resumed.policy.state_dict().values()
    ):
        assert torch.equal(a, b), name


def test_a_mask_policy_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import load_file, save_file

    from agents import CheckpointError

    agent = NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON, checkpoint_dir=str(tmp_path)))
    agent.learn(iterations=1)
    extra = next(tmp_path.glob("iter-*")) / "extra.safetensors"
    tensors = load_file(str(extra))
    save_file(dict(list(tensors.items())[1:]), str(extra))  # one parameter short
    with pytest.raises(CheckpointError, match="extra.safetensors: the saved mask policy"):
        NLPO(make_policy(), make_envs(), NLPOConfig(**COMMON)).resume(tmp_path)


def test_the_mask_policy_is_the_policy_with_its_position_embeddings(monkeypatch):
    """With LMPolicy.tiny (position embeddings), the mask at a refresh comes from the same model:
    the mask policy's logits equal the policy's, before and after training moves them."""
    envs = make_envs(4)
    policy = LMPolicy.tiny(envs, seed=0)
    agent = NLPO(policy, envs, NLPOConfig(**COMMON, nlpo_top_p=0.5, nlpo_update_every=1))
    recorded = {}
    original = policy._logits

    def recording(model, hidden):
        recorded["logits"] = original(model, hidden)
        return recorded["logits"]

    monkeypatch.setattr(policy, "_logits", recording)

    def assert_same_logits() -> None:
        obs, _ = envs.reset(seed=list(range(4)))
        acting = agent.acting_policy()  # refreshes the mask policy once an iteration passed
        policy.reset_state()
        acting.mask_policy.reset_state()
        policy.act(obs, deterministic=True)
        acting.mask_policy.act(obs, deterministic=True)
        torch.testing.assert_close(acting.mask_policy.last_logits, recorded["logits"])

    assert_same_logits()
    agent.learn(total_episodes=16)
    moved = policy.position_embeddings.steps.weight - policy.ref_positions.steps.weight
    assert agent.iteration >= 1 and moved.abs().max() > 0  # training moved the tables
    assert_same_logits()

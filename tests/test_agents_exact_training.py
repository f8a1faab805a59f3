"""Training that is exactly right (issue 13): LoRA on the LM head and LoRA biases, the KL
reference across resume, group sizes, top-k/top-p scored as sampled, PPO's per-minibatch
target-KL stop and GRPO's loss aggregations."""

from __future__ import annotations

import json

import pytest
import torch
from test_agents_helpers import VOCAB, make_envs, make_policy, one_thread  # noqa: F401

from agents import (
    GRPO,
    PPO,
    RLOO,
    CheckpointError,
    GRPOConfig,
    LMPolicy,
    PPOConfig,
    RLOOConfig,
    WarmStartConfig,
    collect_rollout,
    sample_tokens,
    warm_start,
)
from agents.advantages import group_advantages
from agents.token_stats import unpack_support
from textgym.models import tiny_lm

COMMON = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.001)


def _lora_policy(**lora) -> LMPolicy:
    peft = pytest.importorskip("peft")
    base = tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64, **lora.pop("model", {}))
    return LMPolicy(peft.get_peft_model(base, peft.LoraConfig(r=4, **lora)), precision="fp32")


# -- 2. LoRA on lm_head; LoRA biases -------------------------------------------------------------


def test_lora_on_the_lm_head_scores_what_acting_sampled_and_trains_the_head_adapter():
    policy = _lora_policy(target_modules=["q_proj", "lm_head"], init_lora_weights=False)
    ro = collect_rollout(
        policy, make_envs(4), seeds=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0)
    )
    stats = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, mask=ro.mask)
    torch.testing.assert_close(stats.logprobs.detach(), ro.acting_logprobs, atol=1e-5, rtol=0)
    stats.logprobs.sum().backward()
    head = {n: p for n, p in policy.named_parameters() if "lm_head.lora_" in n}
    assert len(head) == 2
    for name, p in head.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # The reference (adapter off) is the base head.
    plain = LMPolicy(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64), precision="fp32")
    ref = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, reference=True)
    want = plain.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len).logprobs.detach()
    torch.testing.assert_close(ref.logprobs, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", ["all", "lora_only"])
def test_lora_that_trains_base_biases_is_refused(bias):
    policy = _lora_policy(
        target_modules=["q_proj", "v_proj"], bias=bias, model={"attention_bias": True}
    )
    assert any(
        p.requires_grad and n.endswith("base_layer.bias") for n, p in policy.named_parameters()
    )
    with pytest.raises(ValueError, match=f"bias={bias!r}.*bias='none'"):
        PPO(policy, make_envs(), PPOConfig(**COMMON))


def test_trainable_weights_outside_the_adapter_are_refused():
    policy = _lora_policy(target_modules=["q_proj"])
    policy.model.get_base_model().model.norm.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="not part of the peft adapter.*norm"):
        PPO(policy, make_envs(), PPOConfig(**COMMON))


# -- 3. the KL reference across resume -----------------------------------------------------------


def _warm(policy: LMPolicy) -> LMPolicy:
    config = WarmStartConfig(epochs=1, lr=3e-3, max_examples=64, seed=3)
    warm_start(policy, "TextGen-Copy-v0", config)
    return policy


def test_resume_refuses_a_learner_whose_reference_is_not_the_runs(tmp_path):
    config = PPOConfig(**COMMON, minibatch_size=4, checkpoint_dir=str(tmp_path))
    PPO(_warm(make_policy()), make_envs(), config).learn(iterations=1)
    state = json.loads(next(tmp_path.glob("iter-*/state.json")).read_text())
    assert "warm start" in state["reference"]["origin"]
    with pytest.raises(CheckpointError, match="KL reference was .*warm start.*this learner's is"):
        PPO(make_policy(), make_envs(), config).resume(tmp_path)  # the base model as reference
    resumed = PPO(_warm(make_policy()), make_envs(), config).resume(tmp_path)  # the same warm start
    assert resumed.iteration == 1


def test_lora_checkpoints_record_the_adapter_off_reference(tmp_path):
    config = PPOConfig(**COMMON, minibatch_size=4, checkpoint_dir=str(tmp_path))
    agent = PPO(_lora_policy(target_modules=["q_proj"]), make_envs(), config)
    agent.learn(iterations=1)
    state = json.loads(next(tmp_path.glob("iter-*/state.json")).read_text())
    assert "adapter switched off" in state["reference"]["origin"]
    # Training moved the adapter, not the reference: resuming into a fresh LoRA policy fits.
    PPO(_lora_policy(target_modules=["q_proj"]), make_envs(), config).resume(tmp_path)


# -- 4. group sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "config"), [(GRPO, GRPOConfig), (RLOO, RLOOConfig)])
def test_group_size_one_is_refused_at_construction(cls, config):
    with pytest.raises(ValueError, match=r"group_size must be >= 2, got 1.*group_size=4"):
        cls(make_policy(), make_envs(), config(**COMMON, group_size=1))


# -- 5. top-k / top-p: the sampled distribution is the one scored --------------------------------


def test_a_kl_bias_correction_that_is_not_a_bool_is_refused_before_anything_changes():
    policy = make_policy()
    with pytest.raises(ValueError, match="kl_bias_correction must be True or False"):
        GRPO(policy, make_envs(4), GRPOConfig(group_size=2, kl_bias_correction="no", **COMMON))
    assert policy.ref_model is None  # no reference copy was taken


def test_sample_tokens_returns_log_probs_of_the_truncated_distribution():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 50, generator=gen)
    tokens, logp = sample_tokens(logits, top_k=5, generator=gen)
    kth = torch.topk(logits, 5).values[:, -1:]
    want = torch.log_softmax(logits.masked_fill(logits < kth, float("-inf")), -1)
    torch.testing.assert_close(logp, want.gather(-1, tokens[:, None]).squeeze(-1))


@pytest.mark.parametrize("sampling", [{"top_k": 5}, {"top_p": 0.5}])
def test_top_k_top_p_rollouts_record_and_score_the_sampled_distribution(sampling):
    policy = make_policy(**sampling)
    ro = collect_rollout(
        policy, make_envs(4), seeds=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0)
    )
    assert ro.support is not None
    kept = unpack_support(ro.support, VOCAB)[ro.mask]
    actions = ro.input_ids[:, ro.prompt_len :][ro.mask]
    assert kept.gather(-1, actions[:, None]).all()  # every action lies in its recorded set
    if "top_k" in sampling:
        assert (kept.sum(-1) <= 5).all()
    args = (ro.input_ids, ro.attention_mask, ro.prompt_len)
    scored = policy.token_stats(*args, mask=ro.mask, support=ro.support).logprobs.detach()
    torch.testing.assert_close(scored, ro.acting_logprobs, atol=1e-5, rtol=0)
    full = policy.token_stats(*args, mask=ro.mask).logprobs.detach()
    assert (full[ro.mask] < ro.acting_logprobs[ro.mask] - 1e-3).all()  # truncation renormalised
    # The learners train on it: PPO's first minibatch starts at ratio 1.
    agent = PPO(policy, make_envs(), PPOConfig(**COMMON, update_epochs=1, minibatch_size=None))
    row = agent.train_iteration()
    assert row["approx_kl"] < 1e-6 and row["clip_frac"] == 0.0


# -- 6. PPO's target-KL stop per minibatch; GRPO's loss aggregation -------------------------------


def test_target_kl_stops_at_the_first_minibatch_over_the_limit():
    # ent_coef: every step moves the policy, whatever the rewards of this rollout.
    config = PPOConfig(**COMMON, update_epochs=2, minibatch_size=2, target_kl=1e-6, ent_coef=0.1)
    agent = PPO(make_policy(), make_envs(8), config)  # 4 minibatches per epoch
    steps = []
    step = agent.optimizer_step
    agent.optimizer_step = lambda loss: steps.append(1) or step(loss)
    row = agent.train_iteration()
    # The first minibatch starts at the rollout policy (KL 0) and steps; the second is over the
    # limit and stops the update before its step.
    assert len(steps) == 1
    assert row["stopped_early"] == 1.0 and row["epochs"] == 1


def test_grpo_loss_aggregations():
    from agents.update import aggregate_loss

    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    assert aggregate_loss(per_token, mask, "token", 4).item() == pytest.approx(8 / 5)
    assert aggregate_loss(per_token, mask, "sequence", 4).item() == pytest.approx((1 + 4) / 2)
    assert aggregate_loss(per_token, mask, "dr_grpo", 6).item() == pytest.approx(8 / (2 * 6))
    with pytest.raises(ValueError, match="loss_type must be one of"):
        GRPO(make_policy(), make_envs(), GRPOConfig(**COMMON, loss_type="seq"))
    with pytest.raises(ValueError, match="dr_grpo.*scale_rewards=False"):
        GRPO(
            make_policy(),
            make_envs(),
            GRPOConfig(**COMMON, loss_type="dr_grpo", scale_rewards=True),
        )
    scores = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.0])
    # Dr. GRPO: advantages centred, not divided by the group's std.
    torch.testing.assert_close(
        group_advantages(scores, 4, "mean", scale=False),
        torch.tensor([-0.75, 0.25, 0.25, 0.25, -0.5, -0.5, -0.5, 1.5]),
    )
    for loss_type in ("token", "sequence", "dr_grpo"):
        agent = GRPO(make_policy(), make_envs(), GRPOConfig(**COMMON, loss_type=loss_type))
        row = agent.train_iteration()
        assert torch.isfinite(torch.tensor(row["loss"])) and agent.skipped_updates == 0

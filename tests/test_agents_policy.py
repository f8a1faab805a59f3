"""LMPolicy: the chunked log-prob path, sampling, KV-cached acting, precision, LoRA reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_agents_helpers import VOCAB, make_envs, make_policy, one_thread  # noqa: F401

from agents import (
    LMPolicy,
    collect_rollout,
    naive_token_logprobs,
    sample_tokens,
    token_logprobs,
)
from agents.precision import bf16_supported, resolve_precision

# -- chunked log-probs ------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_equal_naive_log_softmax_at_vocab_49152(temperature):
    gen = torch.Generator().manual_seed(0)
    vocab, hidden_size, rows = 49_152, 64, 300
    weight = torch.randn(vocab, hidden_size, generator=gen) * 0.3
    hidden = torch.randn(rows, hidden_size, generator=gen)
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    want_logp, want_ent = naive_token_logprobs(hidden, weight, targets, temperature)
    # Chunks of 64 rows: several chunks and a ragged last one.
    logp, ent = token_logprobs(hidden, weight, targets, temperature=temperature, chunk_size=64)
    torch.testing.assert_close(logp, want_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, want_ent, atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprob_gradients_equal_naive(temperature):
    gen = torch.Generator().manual_seed(1)
    vocab, hidden_size, rows = 49_152, 32, 100
    weight = (torch.randn(vocab, hidden_size, generator=gen) * 0.3).requires_grad_()
    hidden = torch.randn(rows, hidden_size, generator=gen).requires_grad_()
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    coef = torch.randn(rows, generator=gen)

    def grads(fn):
        logp, ent = fn()
        ((logp * coef).sum() + 0.1 * ent.sum()).backward()
        out = hidden.grad.clone(), weight.grad.clone()
        hidden.grad = weight.grad = None
        return out

    naive = grads(lambda: naive_token_logprobs(hidden, weight, targets, temperature))
    chunked = grads(
        lambda: token_logprobs(hidden, weight, targets, temperature=temperature, chunk_size=32)
    )
    for got, want in zip(chunked, naive):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_token_stats_matches_full_logits_of_the_model():
    """token_stats() (trunk + chunked head, completion positions only) == model(...).logits."""
    policy = make_policy()
    envs = make_envs(4)
    ro = collect_rollout(
        policy, envs, seeds=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0)
    )
    stats = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len)
    positions = (ro.attention_mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = policy.model(
            input_ids=ro.input_ids, attention_mask=ro.attention_mask, position_ids=positions
        ).logits
    logp_all = torch.log_softmax(logits[:, ro.prompt_len - 1 : -1].float(), -1)
    want = logp_all.gather(-1, ro.input_ids[:, ro.prompt_len :, None]).squeeze(-1) * ro.mask
    torch.testing.assert_close(stats.logprobs.detach(), want, atol=1e-5, rtol=0)
    entropy = -(logp_all.exp() * logp_all).sum(-1) * ro.mask
    torch.testing.assert_close(stats.entropies.detach(), entropy, atol=1e-5, rtol=0)
    assert stats.values.shape == ro.mask.shape


# -- acting with the KV cache -------------------------------------------------------------------


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_rollout_logprobs_equal_recompute_without_cache(kv_cache):
    policy = make_policy(kv_cache=kv_cache)
    envs = make_envs(8)
    ro = collect_rollout(
        policy, envs, seeds=list(range(8)), generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        stats = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len)
    assert ro.lengths.min() < 6 and ro.lengths.max() == 6  # some episodes ended at EOS
    torch.testing.assert_close(ro.acting_logprobs, stats.logprobs, atol=1e-5, rtol=0)


def _recompute(policy: LMPolicy, obs: dict, actions: np.ndarray, prompt_len: int):
    """Log-prob and value of ``actions`` from scratch: the observation plus the action, no cache.
    Only for slots with room for another token (a full slot's action is ignored by the env)."""
    room = torch.from_numpy(obs["num_generated"][:, 0] < obs["input_ids"].shape[1] - prompt_len)
    ids = torch.from_numpy(obs["input_ids"].copy())[room]
    mask = torch.from_numpy(obs["attention_mask"].copy())[room]
    col = prompt_len + torch.from_numpy(obs["num_generated"][:, 0])[room]
    rows = torch.arange(len(ids))
    ids[rows, col] = torch.from_numpy(actions)[room]
    mask[rows, col] = 1
    with torch.no_grad():
        stats = policy.token_stats(ids, mask, prompt_len)
    return room, stats.logprobs[rows, col - prompt_len], stats.values[rows, col - prompt_len]


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_cached_acting_equals_recompute_across_autoresets_and_partial_resets(kv_cache):
    """Slots restart at different times (stop strings end episodes at random lengths, and some
    slots are reset by hand mid-episode): every step's log-probs/values still equal a full
    recompute. The dynamic cache never grows past P + T columns; the static one keeps its
    tensors (same addresses) and compacts itself in place when full."""
    n, prompt_len, horizon = 6, 10, 6
    envs = make_envs(n, stop_strings=tuple("abcdefghijklmnopqrst"))
    policy = make_policy(kv_cache=kv_cache)
    shifts = []
    shift_columns = policy.acting_cache._shift_columns
    policy.acting_cache._shift_columns = lambda delta: (shifts.append(delta), shift_columns(delta))
    gen = torch.Generator().manual_seed(0)
    obs, _ = envs.reset(seed=list(range(n)))
    mask = envs.action_masks()
    restarts, max_columns = 0, 0
    for step in range(40):
        if step == 17:  # reset two slots mid-episode through the reset_mask option
            reset_mask = np.zeros(n, dtype=bool)
            reset_mask[[1, 4]] = True
            obs, _ = envs.reset(options={"reset_mask": reset_mask})
        restarts += int((obs["num_generated"][:, 0] == 0).sum())
        out = policy.act(obs, mask, generator=gen)
        room, logp, value = _recompute(policy, obs, out.actions, prompt_len)
        torch.testing.assert_close(out.logprobs[room], logp, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.values[room], value, atol=1e-5, rtol=0)
        max_columns = max(max_columns, policy.acting_cache.state.mask.shape[1])
        if kv_cache == "static":
            pointers = {
                t.data_ptr()
                for layer in policy.acting_cache.state.cache.layers
                for t in (layer.keys, layer.values)
            } | {policy.acting_cache.state.mask.data_ptr()}
            if step == 0:
                first_pointers = pointers
            assert pointers == first_pointers
        obs, *_ = envs.step(out.actions)
    assert restarts > 2 * n  # the stream really did restart slots at different times
    if kv_cache == "dynamic":
        assert max_columns <= prompt_len + horizon
    else:
        assert any(delta < 0 for delta in shifts)  # it was compacted


def test_action_mask_top_k_top_p_and_greedy():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 1000, generator=gen)
    greedy, _ = sample_tokens(logits, deterministic=True)
    assert torch.equal(greedy, logits.argmax(-1))
    top1, _ = sample_tokens(logits, top_k=1, generator=gen)
    assert torch.equal(top1, greedy)
    tiny_p, _ = sample_tokens(logits, top_p=1e-6, generator=gen)
    assert torch.equal(tiny_p, greedy)
    top5, _ = sample_tokens(logits, top_k=5, generator=gen)
    assert (logits.gather(-1, top5[:, None]) >= torch.topk(logits, 5).values[:, -1:]).all()
    bias = torch.zeros(1000)
    bias[500:] = float("-inf")
    masked, logp = sample_tokens(logits, mask_bias=bias, generator=gen)
    assert (masked < 500).all()
    # log-probs are of the unfiltered distribution
    want = torch.log_softmax(logits, -1).gather(-1, masked[:, None]).squeeze(-1)
    torch.testing.assert_close(logp, want)


def test_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = probs.log().expand(20_000, 4).contiguous()
    tokens, _ = sample_tokens(logits, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_policy_acts_on_the_env_action_mask():
    envs = make_envs(8)
    policy = make_policy()
    obs, _ = envs.reset(seed=0)
    for _ in range(6):
        out = policy.act(obs, envs.action_masks(), generator=torch.Generator().manual_seed(0))
        assert envs.action_masks()[0][out.actions].all()  # never a masked special token
        obs, *_ = envs.step(out.actions)


# -- precision, reference -----------------------------------------------------------------------


def test_precision_resolution():
    assert resolve_precision("fp32", "cpu") is None
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if bf16_supported("cpu") else None)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", "cpu")


def test_bf16_autocast_runs_and_is_close_to_fp32():
    policy = make_policy()
    envs = make_envs(4)
    ro = collect_rollout(
        policy, envs, seeds=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0)
    )
    fp32 = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len).logprobs
    policy.amp_dtype = torch.bfloat16
    bf16 = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len).logprobs
    assert bf16.dtype == torch.float32  # statistics always come back in fp32
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0)


def test_frozen_copy_reference_stays_put():
    policy = make_policy()
    policy.ensure_reference()
    assert "ref_model" not in dict(policy.named_children())  # neither trained nor saved
    assert all(not p.requires_grad for p in policy.ref_model.parameters())
    ro = collect_rollout(make_policy(), make_envs(4), seeds=[0, 1, 2, 3])
    before = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, reference=True)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.1)
    after = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, reference=True)
    assert torch.equal(before.logprobs, after.logprobs)


def test_lora_reference_is_the_adapter_switched_off():
    peft = pytest.importorskip("peft")
    from textgym.models import tiny_lm

    base = tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64)
    plain = LMPolicy(tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64), precision="fp32")
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    policy = LMPolicy(peft.get_peft_model(base, config), precision="fp32")
    policy.ensure_reference()
    assert policy.ref_model is None  # one set of base weights
    ro = collect_rollout(plain, make_envs(4), seeds=[0, 1, 2, 3])
    args = (ro.input_ids, ro.attention_mask, ro.prompt_len)
    ref = policy.token_stats(*args, reference=True).logprobs
    torch.testing.assert_close(ref, plain.token_stats(*args).logprobs.detach(), atol=1e-6, rtol=0)
    assert not torch.allclose(policy.token_stats(*args).logprobs, ref, atol=1e-4)


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_ignored_slots_are_rebuilt_when_used_again(kv_cache):
    """A slot ignored for a few steps (its cache row goes stale) acts correctly once it is used
    again mid-episode: the policy prefills it from its observation."""
    n, prompt_len = 4, 10
    envs = make_envs(n)
    policy = make_policy(kv_cache=kv_cache)
    gen = torch.Generator().manual_seed(0)
    obs, _ = envs.reset(seed=list(range(n)))
    ignore = np.array([False, True, False, False])
    for step in range(5):
        out = policy.act(obs, ignore=ignore if 1 <= step <= 2 else None, generator=gen)
        if step >= 3:  # slot 1 is used again, mid-episode
            room, logp, value = _recompute(policy, obs, out.actions, prompt_len)
            torch.testing.assert_close(out.logprobs[room], logp, atol=1e-5, rtol=0)
            torch.testing.assert_close(out.values[room], value, atol=1e-5, rtol=0)
        obs, *_ = envs.step(out.actions)


def test_gpu_path_selection():
    """torch.compile and the static KV cache are chosen on CUDA, not on CPU; bad values and
    models the static cache cannot serve get clear errors."""
    import transformers

    from agents.acting_cache import resolve_kv_cache
    from agents.precision import resolve_compile

    assert resolve_compile("auto", "cpu") is None and resolve_compile("auto", "cuda") == "inductor"
    assert (
        resolve_compile(True, "cpu") == "inductor" and resolve_compile("eager", "cuda") == "eager"
    )
    assert resolve_compile(False, "cuda") is None and resolve_compile("off", "cuda") is None
    with pytest.raises(ValueError, match="torch.compile backend"):
        resolve_compile("fastest", "cpu")
    llama = make_policy().model.config
    assert resolve_kv_cache("auto", "cpu", llama) == "dynamic"
    assert resolve_kv_cache("auto", "cuda", llama) == "static"
    assert resolve_kv_cache("static", "cpu", llama) == "static"
    with pytest.raises(ValueError, match="kv_cache must be one of"):
        resolve_kv_cache("paged", "cpu", llama)
    sliding = transformers.MistralConfig(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=VOCAB,
        sliding_window=8,
    )
    assert resolve_kv_cache("auto", "cuda", sliding) == "dynamic"
    with pytest.raises(ValueError, match="sliding-window"):
        resolve_kv_cache("static", "cuda", sliding)
    policy = make_policy()  # on this CPU: eager, dynamic cache
    assert policy.compile_backend is None and policy.kv_cache == "dynamic"


def test_compiled_paths_equal_eager_and_the_step_compiles_once():
    """The compiled decoder (traced by dynamo and AOTAutograd, as inductor would get it; the
    "aot_eager" backend runs those graphs without generating code, so this takes seconds on CPU)
    gives the eager results: the one-token
    static-cache step, compiled once for all steps, compactions included; and the update's
    full-sequence forward and its gradients, whatever the minibatch shape."""
    import torch._dynamo

    torch._dynamo.reset()
    eager, compiled = (
        make_policy(kv_cache="static"),
        make_policy(kv_cache="static", compile="aot_eager"),
    )
    graphs = []
    for policy in (eager, compiled):
        envs = make_envs(6)
        obs, _ = envs.reset(seed=list(range(6)))
        gen = torch.Generator().manual_seed(0)
        logps = []
        for step in range(40):
            out = policy.act(obs, generator=gen)
            logps.append(out.logprobs)
            obs, *_ = envs.step(out.actions)
            if step in (5, 39):
                graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        if policy is eager:
            expected = torch.stack(logps)
        else:
            torch.testing.assert_close(torch.stack(logps), expected, atol=1e-5, rtol=0)
    assert graphs[0] == graphs[1] == 0 and graphs[2] == graphs[3] == 1  # one graph, 34 more steps
    ro = collect_rollout(
        eager, make_envs(8), seeds=list(range(8)), generator=torch.Generator().manual_seed(1)
    )
    for rows in (slice(0, 8), slice(0, 3)):  # two minibatch shapes
        ids, attn, mask = ro.input_ids[rows], ro.attention_mask[rows], ro.mask[rows]
        results = []
        for policy in (eager, compiled):
            policy.zero_grad()
            stats = policy.token_stats(ids, attn, ro.prompt_len, mask=mask)
            (stats.logprobs.sum() + stats.values.sum()).backward()
            results.append((stats.logprobs.detach(), [p.grad.clone() for p in policy.parameters()]))
        torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=0)
        for got, want in zip(results[1][1], results[0][1]):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_a_model_that_does_not_compile_trains_eagerly_with_a_warning():
    import torch._dynamo

    def failing_backend(graph, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    torch._dynamo.reset()
    policy, eager = make_policy(), make_policy()
    policy.compile_backend = failing_backend  # what resolve_compile hands torch.compile
    ro = collect_rollout(
        eager, make_envs(4), seeds=list(range(4)), generator=torch.Generator().manual_seed(0)
    )
    with pytest.warns(UserWarning, match="torch.compile .* failed, running eagerly"):
        stats = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, mask=ro.mask)
    assert policy.compile_backend is None
    expected = eager.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, mask=ro.mask)
    torch.testing.assert_close(stats.logprobs, expected.logprobs, atol=1e-6, rtol=0)

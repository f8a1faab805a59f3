"""LMPolicy: a causal LM with a value head, acting on textgym observations with a KV cache.

Three jobs, top to bottom in this file:

1. **Token statistics for learning** (:func:`token_logprobs`, :meth:`LMPolicy.evaluate`): the
   log-prob of each chosen completion token, the entropy of the policy there and the value. With a
   49k vocabulary the logits of a batch are the largest tensor by far (16 x 256 tokens x 49,152 x
   4 bytes = 805 MB, and ``log_softmax`` doubles it), so they are never built for the whole batch:
   the LM head runs on the hidden states of *completion positions only*, a chunk of rows at a
   time, and each chunk reduces straight to (log-prob, entropy). With gradients each chunk is
   checkpointed, so backward recomputes its logits instead of keeping them, except when all rows'
   log-softmax fits in ``KEEP_ELEMENTS`` (128 MiB: a batch of 16 x 32 tokens at SmolLM2's
   vocabulary), which backward then reuses (one LM-head matmul of four saved).
2. **Sampling** (:func:`sample_tokens`): temperature, top-k, top-p and the env's action mask.
3. **Acting through the env** (:meth:`LMPolicy.act`): one batched KV cache, one row per env slot.
   A slot whose observation shows ``num_generated == 0`` (a new prompt) gets its row rebuilt by a
   prefill (with the dynamic cache, slots with the same prompt, a GRPO group, share one
   prefilled row, copied); every
   other slot feeds only the token the env appended last step. Rows are
   right-aligned, left padding is masked, and leading columns no row needs are cropped, so the
   cache never grows past ``P + T`` columns. On CUDA the cache is a preallocated ``StaticCache``
   instead (same layout; every row writes the same column each step, and the columns are
   compacted in place when full), so that the compiled one-token step keeps one graph.

The LM head runs in fp32 on both paths, also under bf16 autocast: acting samples from, and the
update scores, fp32 logits of the same hidden states (a bf16 head rounds every logit to 3
significant digits, ~0.02 nats per token for SmolLM2). The bf16 trunk itself still rounds
differently for different shapes (KV-cached steps vs full sequences, or two batch sizes), so the
learners rescore old and reference log-probs by the update's own forward (see
:meth:`agents.base.Learner.prepare`) and log the acting path's remaining gap as ``logprob_gap``.

The distribution the learners optimise is ``softmax(logits / temperature)`` over the whole
vocabulary, restricted to a ``support`` where there is one. The env's action mask only filters
*sampling* (the recorded log-probs are of the unmasked distribution). A ``support`` restricts the
distribution itself: acting and :meth:`LMPolicy.evaluate` both renormalise over it, so PPO's
importance ratios start at exactly 1. Two things give one: NLPO's mask, and **top-k / top-p**.
Top-k/top-p change the distribution actions are actually drawn from, so :meth:`LMPolicy.act`
records each step's kept set as the support (with the env's mask applied first) and the
renormalised log-prob; the rollout keeps the sets (packed, ``V / 8`` bytes per token) and the
update scores that same truncated distribution. Training is then on-policy for the sampler, not
for the full softmax: the gradient moves mass within each step's kept set, and the KL to the
reference is that of the truncated policy. (TRL and vLLM-based trainers instead score the
unfiltered distribution, a known off-policy bias: with top-p 0.9, 8.6% of SmolLM2's mass lies
outside the sampled set.) With top-k = 0 and top-p = 1 (the defaults) nothing of this applies.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

PRECISIONS = ("auto", "fp32", "bf16")

# Elements of one chunk of fp32 logits: 2**23 floats = 32 MiB, i.e. 170 rows at vocabulary 49,152.
CHUNK_ELEMENTS = 2**23
# With gradients, the forward keeps every chunk's log-softmax for the backward (instead of
# recomputing it: one LM-head matmul less, a third of the head's cost) while all rows together
# hold at most this many elements: 2**25 fp32 = 128 MiB, 682 rows at vocabulary 49,152 (a GRPO
# batch of 16 x 32 tokens). Larger batches recompute, and their peak stays a few chunks.
KEEP_ELEMENTS = 2**25

_BITS = 2 ** torch.arange(8, dtype=torch.uint8)


def pack_support(support: torch.Tensor) -> torch.Tensor:
    """Bool ``(..., V)`` -> uint8 ``(..., ceil(V / 8))``, 8 tokens per byte (a 49k-token support set
    is 6 KiB per position, so a rollout can keep one per action)."""
    vocab = support.shape[-1]
    padded = F.pad(support.to(torch.uint8), (0, -vocab % 8))
    bits = padded.unflatten(-1, (-1, 8)) * _BITS.to(support.device)
    return bits.sum(-1, dtype=torch.uint8)


def unpack_support(packed: torch.Tensor, vocab: int) -> torch.Tensor:
    """The inverse of :func:`pack_support`: uint8 ``(..., ceil(V / 8))`` -> bool ``(..., V)``."""
    bits = packed[..., None].bitwise_and(_BITS.to(packed.device)).ne(0)
    return bits.flatten(-2)[..., :vocab]


# --- precision ----------------------------------------------------------------------------------


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no reliable way to ask; stay in fp32
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 matmuls are native (fast) on ``device``: CUDA with bf16, or a CPU with AMX or
    AVX512-BF16 (on other CPUs bf16 is emulated and slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())
    return False


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``); None = fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_supported(device) else None


# --- GPU paths: torch.compile and the static KV cache -------------------------------------------

KV_CACHES = ("auto", "dynamic", "static")


def resolve_compile(compile: bool | str, device: str | torch.device) -> str | None:
    """The ``torch.compile`` backend for ``compile``, or None (eager).

    ``"auto"``: ``"inductor"`` on CUDA (where compiling pays off), eager elsewhere (on CPU the
    first compilation takes minutes and gains little). ``True``: ``"inductor"``; ``False`` or
    ``"off"``: eager; any other string: that backend (``torch._dynamo.list_backends()``, or
    ``"eager"``/``"aot_eager"``, which trace without generating code, for debugging).
    """
    if compile == "auto":
        return "inductor" if torch.device(device).type == "cuda" else None
    if compile is True:
        return "inductor"
    if compile is False or compile == "off":
        return None
    backends = {"eager", "aot_eager", *torch._dynamo.list_backends(exclude_tags=())}
    if compile not in backends:
        raise ValueError(
            f"compile must be 'auto', True, False, 'off' or a torch.compile backend "
            f"({', '.join(sorted(backends))}), got {compile!r}"
        )
    return compile


def _has_sliding_layers(config: Any) -> bool:
    from transformers import StaticCache

    layers = StaticCache(config=config, max_cache_len=1).layers  # lazy: allocates nothing
    return any(getattr(layer, "is_sliding", False) for layer in layers)


def resolve_kv_cache(kv_cache: str, device: str | torch.device, config: Any) -> str:
    """``"dynamic"`` or ``"static"`` for ``kv_cache``. ``"auto"``: static on CUDA (fixed tensor
    addresses, so the compiled decoding step never recompiles), dynamic elsewhere and for models
    with sliding-window layers (whose static layers roll their buffer, which per-row restarts
    cannot follow)."""
    if kv_cache not in KV_CACHES:
        raise ValueError(f"kv_cache must be one of {KV_CACHES}, got {kv_cache!r}")
    if kv_cache == "auto":
        static = torch.device(device).type == "cuda" and not _has_sliding_layers(config)
        return "static" if static else "dynamic"
    if kv_cache == "static" and _has_sliding_layers(config):
        raise ValueError(
            "kv_cache='static' does not support models with sliding-window attention layers; "
            "use kv_cache='dynamic'"
        )
    return kv_cache


# The from-scratch settings of LMPolicy.tiny: a high learning rate (a small model at init scale
# 0.02), no KL penalty (the untrained reference means nothing), and a few hundred episodes per
# update (with tens, the policy-gradient noise collapses the policy to one constant string
# before it learns to read the prompt). PPO's target_kl off: the large steps are wanted here.
TINY_LEARNER_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "kl_coef": 0.0,
    "target_kl": None,
    "minibatch_size": 64,
    "update_epochs": 2,
    "episodes_per_update": 256,
}


# --- chunked log-probs and entropies ------------------------------------------------------------


def _chunk_stats(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    softcap: float | None,
    with_entropy: bool,
    support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of ``targets``, entropy) for one chunk of rows; logits live only in here."""
    with torch.autocast(hidden.device.type, enabled=False):  # the LM head in fp32 (see below)
        logits = F.linear(hidden.float(), weight.float(), None if bias is None else bias.float())
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    if temperature != 1.0:
        logits = logits / temperature
    if support is not None:
        logits = logits.masked_fill(~unpack_support(support, logits.shape[-1]), float("-inf"))
    # log_softmax of one chunk: the naive math (and its fp32 accuracy), on chunk x V only.
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    if not with_entropy:
        return logp, logp.new_zeros(0)
    probs = logp_all.exp()
    entropy = -(probs * torch.where(probs > 0, logp_all, 0.0)).sum(-1)  # 0 log 0 = 0
    return logp, entropy


class _ChunkedLogprobs(torch.autograd.Function):
    """Log-probs and entropies with a hand-written, chunked backward.

    Forward keeps nothing but its inputs (and, when all rows' log-softmax fits in
    ``KEEP_ELEMENTS``, that log-softmax, so that backward need not recompute it). Backward
    recomputes each chunk's softmax and accumulates the LM head's weight gradient in place
    (``addmm_``), so the whole path needs the gradient buffers themselves plus a few ``chunk x V``
    fp32 buffers; autograd-level checkpointing would also allocate a full ``V x H``
    weight-gradient partial per chunk. An all-zero entropy gradient (no entropy bonus) skips the
    entropy terms.

    With ``z = logits / T``, ``p = softmax(z)``, ``H = -sum p log p`` and upstream gradients
    ``g`` (log-prob) and ``e`` (entropy): ``dL/dz = g (onehot - p) - e p (log p + H)``.
    """

    @staticmethod
    def forward(  # noqa: D102
        ctx, hidden, weight, targets, support, temperature, chunk, compute_dtype, with_entropy=True
    ):
        ctx.save_for_backward(hidden, weight, targets, support)
        ctx.temperature, ctx.chunk, ctx.compute_dtype = temperature, chunk, compute_dtype
        w = weight.to(compute_dtype)
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        keep = needs_grad and hidden.shape[0] * weight.shape[0] <= KEEP_ELEMENTS
        ctx.kept = [] if keep else None
        logps, ents = [], []
        for start in range(0, hidden.shape[0], chunk):
            stop = start + chunk
            logp_all, probs = _log_softmax_chunk(
                hidden[start:stop], w, temperature, support, start, with_probs=with_entropy
            )
            logps.append(logp_all.gather(-1, targets[start:stop, None]).squeeze(-1))
            if with_entropy:  # else the entropies are zeros, and no softmax is built
                ents.append(-probs.mul_(logp_all).sum(-1))
            if keep:  # not changed above (probs was): backward reads it instead of recomputing
                ctx.kept.append(logp_all)
            del logp_all, probs  # free this chunk's buffers before the next one is built
        logp = torch.cat(logps)
        return logp, (torch.cat(ents) if with_entropy else torch.zeros_like(logp))

    @staticmethod
    def backward(ctx, grad_logp, grad_ent):  # noqa: D102
        hidden, weight, targets, support = ctx.saved_tensors
        t, chunk, dtype = ctx.temperature, ctx.chunk, ctx.compute_dtype
        w = weight.to(dtype)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        )
        with_entropy = bool(grad_ent.any())  # False without an entropy bonus
        for index, start in enumerate(range(0, hidden.shape[0], chunk)):
            stop = start + chunk
            h = hidden[start:stop]
            if ctx.kept is not None:
                logp_all, ctx.kept[index] = ctx.kept[index], None
                probs = logp_all.exp()
                if support is not None:  # kept with 0 outside the support: probability 0 there
                    outside = ~unpack_support(support[start:stop], logp_all.shape[-1])
                    probs.masked_fill_(outside, 0.0)
            else:
                logp_all, probs = _log_softmax_chunk(h, w, t, support, start)
            if with_entropy:
                entropy = -(probs * logp_all).sum(-1, keepdim=True)
                grad = logp_all.add_(entropy).mul_(probs).mul_(-grad_ent[start:stop, None])
                grad.sub_(probs.mul_(grad_logp[start:stop, None]))
            else:
                grad = probs.mul_(-grad_logp[start:stop, None])
            grad.scatter_add_(-1, targets[start:stop, None], grad_logp[start:stop, None])
            if t != 1.0:
                grad.div_(t)  # chain rule through z = logits / T
            if grad_hidden is not None:
                grad_hidden[start:stop] = (grad.to(dtype) @ w).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(grad.T, h.float())
            del grad, logp_all, probs  # free this chunk's buffers before the next one is built
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def _log_softmax_chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    temperature: float,
    support: torch.Tensor | None,
    start: int,
    with_probs: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log_softmax, softmax) of one chunk's logits (rows ``[start, start + len(hidden))`` of
    the batch), restricted to the packed ``support`` if given. Outside the support the
    probability is 0 and the returned log-prob is 0, not -inf, so that ``p * log p`` and the
    backward's ``p * (log p + H)`` are 0 there rather than NaN. ``with_probs=False``: the
    softmax is not built (None), the log-softmax is the same."""
    logits = F.linear(hidden.to(weight.dtype), weight).float()
    if temperature != 1.0:
        logits.div_(temperature)
    outside = None
    if support is not None:
        outside = ~unpack_support(support[start : start + len(hidden)], logits.shape[-1])
        logits.masked_fill_(outside, float("-inf"))
    logp_all = torch.log_softmax(logits, dim=-1)
    del logits
    probs = logp_all.exp() if with_probs else None
    if outside is not None:
        logp_all.masked_fill_(outside, 0.0)
    return logp_all, probs


def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    with_entropy: bool = True,
    chunk_size: int | None = None,
    softcap: float | None = None,
    support: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of ``targets`` and entropies under ``softmax(hidden @ weight.T / temperature)``.

    ``hidden``: ``(M, H)`` hidden states, one row per token to score; ``targets``: ``(M,)`` ids.
    ``support``: packed (:func:`pack_support`) ``(M, ceil(V / 8))`` sets of allowed tokens: the
    softmax is then over each row's set only (NLPO's masked policy); every target must be in its
    row's set.
    Rows are processed ``chunk_size`` at a time (default: ``CHUNK_ELEMENTS // V`` rows), so the
    peak extra memory is a few ``chunk x V`` fp32 buffers whatever ``M`` is, with or without
    gradients (:class:`_ChunkedLogprobs` recomputes each chunk in backward). The LM head runs
    in fp32 even under bf16 autocast, as :meth:`LMPolicy.act` does when sampling: a bf16 head
    rounds each logit to 3 significant digits, and acting and the update would score different
    distributions (SmolLM2, bf16 head: ~0.02 nats per token apart). Returns fp32 ``(M,)`` tensors
    (entropy None if not asked for). A bias or a final-logit softcap falls back to per-chunk
    activation checkpointing.
    """
    vocab = weight.shape[0]
    chunk = chunk_size or max(1, CHUNK_ELEMENTS // vocab)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if bias is None and not softcap:
        device = hidden.device.type
        dtype = torch.float32  # the LM head's compute dtype, under autocast too (see above)
        if hidden.shape[0] == 0:
            empty = hidden.new_zeros(0, dtype=torch.float32)
            return empty, (empty if with_entropy else None)
        with torch.autocast(device, enabled=False):
            logp, ent = _ChunkedLogprobs.apply(
                hidden, weight, targets, support, temperature, chunk, dtype, with_entropy
            )
        return logp, (ent if with_entropy else None)
    logps, ents = [], []
    for start in range(0, hidden.shape[0], chunk):
        args = (
            hidden[start : start + chunk],
            weight,
            bias,
            targets[start : start + chunk],
            temperature,
            softcap,
            with_entropy,
            None if support is None else support[start : start + chunk],
        )
        if grad:
            logp, ent = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            logp, ent = _chunk_stats(*args)
        logps.append(logp)
        ents.append(ent)
    if not logps:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return empty, (empty if with_entropy else None)
    return torch.cat(logps), (torch.cat(ents) if with_entropy else None)


def naive_token_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook version of :func:`token_logprobs` (full fp32 logits + ``log_softmax`` +
    gather): the reference for tests and the memory benchmark, not for training."""
    logp_all = torch.log_softmax(F.linear(hidden, weight).float() / temperature, dim=-1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


# --- sampling -----------------------------------------------------------------------------------


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    mask_bias: torch.Tensor | None = None,
    support: torch.Tensor | None = None,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of fp32 ``logits`` ``(N, V)``; returns (tokens, log-probs).

    ``mask_bias`` (``(V,)`` or ``(N, V)``, 0 or -inf) filters what can be drawn; the returned
    log-probs are of the unmasked ``softmax(logits / temperature)``. ``support`` (bool ``(N, V)``)
    restricts the distribution itself, so the log-probs are renormalised over it (NLPO's masked
    policy, which the update scores the same way). ``top_k`` (0 = off) and ``top_p`` (1 = off)
    truncate the distribution sampled from, and the log-probs are those of that truncated,
    renormalised distribution (:meth:`LMPolicy.act` records the kept set, see
    :func:`sampling_support`, so that the update scores the same). ``deterministic`` takes the
    argmax (log-prob of the untruncated distribution). Sampling inverts the CDF with one uniform
    draw per row (``cumsum`` + ``searchsorted``):
    exact, and about 10x cheaper than ``torch.multinomial`` at V = 49,152 on CPU.
    """
    scaled = logits / temperature if temperature != 1.0 else logits
    if support is not None:
        scaled = scaled.masked_fill(~support, float("-inf"))
    filtered = scaled if mask_bias is None else scaled + mask_bias
    if deterministic:
        tokens = filtered.argmax(-1)
    else:
        vocab = filtered.shape[-1]
        truncated = _truncate(filtered, top_k, top_p)
        if truncated is not filtered:  # the distribution sampled from is the truncated one
            scaled = filtered = truncated
        cdf = torch.softmax(filtered, dim=-1).cumsum_(-1)
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
        tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max_(vocab - 1)
        # Float rounding at the very end of the CDF could land on a zero-probability id.
        bad = torch.isinf(filtered.gather(-1, tokens[:, None]).squeeze(-1))
        if bad.any():
            tokens = torch.where(bad, filtered.argmax(-1), tokens)
    logp = scaled.gather(-1, tokens[:, None]).squeeze(-1) - torch.logsumexp(scaled, dim=-1)
    return tokens, logp


def _truncate(filtered: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """``filtered`` with -inf outside the top-k and top-p sets (itself if neither applies)."""
    if 0 < top_k < filtered.shape[-1]:
        kth = torch.topk(filtered, top_k, dim=-1).values[:, -1:]
        filtered = filtered.masked_fill(filtered < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass
        # (so the top token always stays).
        drop = (probs.cumsum(-1) - probs) > top_p
        filtered = filtered.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return filtered


def sampling_support(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    mask_bias: torch.Tensor | None = None,
    support: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Bool ``(N, V)``: the tokens :func:`sample_tokens` may draw under top-k/top-p (after the
    action mask and ``support``), or None when top-k/top-p are off. Used as the support of the
    step, it makes the recorded and the re-scored log-probs those of the distribution actually
    sampled from (see the module docstring)."""
    if not (0 < top_k < logits.shape[-1] or top_p < 1.0):
        return None
    scaled = logits / temperature if temperature != 1.0 else logits
    if support is not None:
        scaled = scaled.masked_fill(~support, float("-inf"))
    if mask_bias is not None:
        scaled = scaled + mask_bias
    return torch.isfinite(_truncate(scaled, top_k, top_p))


# --- the policy ---------------------------------------------------------------------------------


@dataclass
class TokenStats:
    """Per-token statistics of completions, all ``(B, T)`` fp32, zero where ``mask`` is False.

    Position ``t`` is completion token ``t`` (observation index ``P + t``); ``values[:, t]`` is the
    value of the state *before* token ``t`` was chosen.
    """

    logprobs: torch.Tensor
    entropies: torch.Tensor | None
    values: torch.Tensor | None
    mask: torch.Tensor  # bool: a real completion token


@dataclass
class ActOutput:
    """What :meth:`LMPolicy.act` returns for one vector-env step."""

    actions: np.ndarray  # (N,) int64 token ids, ready for envs.step
    logprobs: torch.Tensor  # (N,) log-prob of each action under softmax(logits / temperature)
    values: torch.Tensor  # (N,) value of each slot's current state
    # (N, ceil(V / 8)) uint8: the packed support the log-probs are normalised over (act's support)
    support: torch.Tensor | None = None


@dataclass
class _CacheState:
    cache: Any  # transformers DynamicCache, one row per env slot
    mask: torch.Tensor  # (N, C) attention mask of the cached columns
    next_pos: torch.Tensor  # (N,) position id of the next token each row will be fed
    stale: np.ndarray  # (N,) bool: rows fed while ignored, to rebuild before their next use
    # (N,) num_generated at the last act: a row that gained more than one token since (a dialogue
    # partner's reply) is rebuilt from its observation.
    seen: np.ndarray | None = None
    # Static cache only: the next column written (shared by all rows); ``mask`` is then a fixed
    # (N, L) buffer whose columns from ``column`` on are 0.
    column: int | None = None


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def _head_weight_and_bias(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The LM head's effective ``(weight, bias)``: what ``head(hidden)`` computes, as one linear
    map. A peft LoRA adapter on the head (active and not merged) adds its ``B @ A * scaling``
    (and ``lora_B``'s bias with ``lora_bias=True``), differentiably, so that the update scores
    what acting sampled from and the head's adapter gets its gradient. The reference (adapter
    switched off) gets the base weights."""
    weight, bias = head.weight, getattr(head, "bias", None)
    lora_a = getattr(head, "lora_A", None)
    if lora_a is None or getattr(head, "disable_adapters", False) or getattr(head, "merged", False):
        return weight, bias
    for name in head.active_adapters:
        if name not in lora_a:
            continue
        if name in getattr(head, "lora_variant", {}):  # DoRA & co. are not a plain B @ A delta
            raise ValueError(
                f"LoRA variant {type(head.lora_variant[name]).__name__} on the LM head is not "
                f"supported (its output is not base + B @ A); leave the head out of "
                f"target_modules or use plain LoRA (use_dora=False)"
            )
        with torch.autocast(weight.device.type, enabled=False):  # the delta in fp32
            weight = weight + head.get_delta_weight(name).to(weight.dtype)
            if head.lora_bias.get(name, False):
                delta_b = head.lora_B[name].bias * head.scaling[name]
                bias = delta_b if bias is None else bias + delta_b
    return weight, bias


def _unique_rows(
    ids: np.ndarray, mask: np.ndarray, steps: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first row of each distinct (ids, mask, steps) row, the inverse map): rows
    ``unique[inverse]`` equal ``ids`` (and ``mask``, ``steps``)."""
    parts = [ids, mask] if steps is None else [ids, mask, steps]
    key = np.ascontiguousarray(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts], 1))
    _, unique, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    # np.unique sorts the distinct rows; relabel them in order of first appearance
    order = np.argsort(unique, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return unique[order], rank[inverse.reshape(-1)]


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding (what ``generate`` uses)."""
    return (attention_mask.cumsum(-1) - 1).clamp_min_(0)


class PositionEmbeddings(nn.Module):
    """Learned embeddings of where a token stands, added to a causal LM's input embeddings.

    Two tables: the token's position (the position id, counted from the first real prompt
    token) and its completion step (0 for the prompt; ``1 + t`` for the token that predicts
    completion token ``t``, i.e. the prompt's last token for ``t = 0``; :meth:`LMPolicy.step_ids`).
    A causal LM trained from scratch has only relative offsets (RoPE) to go by, so "write the
    prompt's t-th character at step t" (copy, reverse, sort) hides behind an offset that varies
    with the prompt's length; with both tables the token at step ``t`` can attend to position
    ``t`` directly, as the query token of SB3's :class:`~agents.sb3.TokenEmbeddingExtractor`
    does. Indices past the tables share their last row. Initialised like token embeddings
    (normal, std 0.02, from ``seed``), not zeros: two zero tables have no gradient to align.
    """

    def __init__(self, size: int, hidden_size: int, *, seed: int = 0):
        super().__init__()
        self.steps = nn.Embedding(size + 2, hidden_size)
        self.positions = nn.Embedding(size + 2, hidden_size)
        generator = torch.Generator().manual_seed(seed + 1)
        for table in (self.steps, self.positions):
            nn.init.normal_(table.weight, std=0.02, generator=generator)

    def forward(self, steps: torch.Tensor | np.ndarray, position_ids: torch.Tensor) -> torch.Tensor:
        steps = torch.as_tensor(steps, device=position_ids.device)
        top = self.steps.num_embeddings - 1
        return self.steps(steps.clamp(0, top)) + self.positions(position_ids.clamp(0, top))


class LMPolicy(nn.Module):
    """A causal LM (actor) and a linear value head (critic) on the same trunk.

    Args:
        model: any transformers causal LM (e.g. from :func:`textgym.models.load_lm`), optionally a
            peft LoRA model. Kept in eval mode (no dropout): RL fine-tuning wants the sampling
            distribution and the trained one to be the same.
        tokenizer: kept for decoding and convenience (optional).
        precision: ``"auto"`` (bf16 autocast where bf16 is native: CUDA, CPUs with AMX or
            AVX512-BF16; fp32 elsewhere), ``"fp32"`` or ``"bf16"``. Weights stay fp32 (they are
            the optimizer's master copy); only matmuls run in bf16.
        temperature, top_k, top_p: sampling defaults (1.0, 0 = off, 1.0 = off). Top-k/top-p make
            acting record each step's kept set, and the update scores the truncated distribution
            (see the module docstring).
        chunk_size: rows per chunk of the log-prob path (default ``CHUNK_ELEMENTS // V``).
        compile: ``torch.compile`` the decoder (see :func:`resolve_compile`; ``"auto"``: on CUDA
            only). It compiles the full-sequence forwards of the update (policy and reference,
            ``dynamic=True`` since minibatch shapes vary) and, with the static cache, the
            one-token decoding step (fixed shapes). Prefills stay eager.
        kv_cache: the acting cache, ``"dynamic"`` (grows by a column per step, cropped on the
            left) or ``"static"`` (preallocated ``P + T`` plus slack columns, compacted in place
            when full); ``"auto"``: static on CUDA (see :func:`resolve_kv_cache`). Both give the
            same actions and log-probs.
        value_init_std: std of the value head's initial weights (default 0: the untrained
            critic predicts 0, so it neither dominates the loss nor perturbs the trunk, and with
            no reward there is no value gradient either).
        position_embeddings: add learned embeddings of each token's position and completion
            step to the LM's input embeddings (:class:`PositionEmbeddings`), for observations of
            up to this many tokens (0: off). For models trained from scratch
            (:meth:`LMPolicy.tiny`); the reference keeps a frozen copy of the initial ones.
        seed: seeds the value head's initialisation (the global RNG is not used).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        precision: str = "auto",
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        chunk_size: int | None = None,
        compile: bool | str = "auto",
        kv_cache: str = "auto",
        value_init_std: float = 0.0,
        position_embeddings: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(
                f"temperature must be > 0 (use deterministic=True for greedy), got {temperature}"
            )
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.chunk_size = chunk_size
        config = (
            model.config.get_text_config()
            if hasattr(model.config, "get_text_config")
            else model.config
        )
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.value_head = nn.Linear(config.hidden_size, 1)
        nn.init.normal_(
            self.value_head.weight,
            std=value_init_std,
            generator=torch.Generator().manual_seed(seed),
        )
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(self.device)  # fp32 whatever the model's dtype
        if position_embeddings < 0:
            raise ValueError(
                f"position_embeddings must be >= 0 (0: off), got {position_embeddings}"
            )
        self.position_embeddings: PositionEmbeddings | None = None
        if position_embeddings:
            self.position_embeddings = PositionEmbeddings(
                position_embeddings, config.hidden_size, seed=seed
            ).to(self.device)
        self._reference_active = False
        self.precision = precision
        self.amp_dtype = resolve_precision(precision, self.device)
        decoder, _ = _decoder_and_head(model)
        params = inspect.signature(decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.compile_backend = resolve_compile(compile, self.device)
        self.kv_cache = resolve_kv_cache(kv_cache, self.device, decoder.config)
        # Compiled wrappers (they share the decoders' parameters) and the static cache with its
        # mask buffer; plain attributes, not submodules, so that checkpoints do not see them.
        self._compiled: dict[tuple[int, bool], tuple[nn.Module, Any]] = {}
        self._static: tuple[Any, torch.Tensor] | None = None
        self.ref_model: nn.Module | None = None
        self.ref_positions: PositionEmbeddings | None = None
        # Settings a learner built without a config starts from (see LearnerConfig.for_policy).
        self.learner_defaults: dict[str, Any] = {}
        # What the KL reference is, in words (checkpoints record it with reference_record()).
        self.reference_origin: str | None = None
        self._state: _CacheState | None = None
        self._mask_key: np.ndarray | None = None
        self._mask_bias: torch.Tensor | None = None

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = "smollm2-135m",
        *,
        device: str | torch.device | None = None,
        lora: Any = None,
        **kwargs: Any,
    ) -> LMPolicy:
        """Load a model with :func:`textgym.models.load_lm` (fp32 master weights) and wrap it.

        ``lora``: a ``peft.LoraConfig`` or a dict of its arguments (e.g. ``{"r": 16,
        "target_modules": "all-linear"}``) to train LoRA adapters instead of all weights; the
        reference model is then the same weights with the adapter switched off. Other keyword
        arguments go to :class:`LMPolicy`.
        """
        from textgym.models import load_lm

        model, tokenizer = load_lm(name_or_path, device=device, dtype=torch.float32)
        if lora is not None:
            from peft import LoraConfig, get_peft_model  # optional dependency

            if isinstance(lora, dict):
                lora = LoraConfig(task_type="CAUSAL_LM", **lora)
            model = get_peft_model(model, lora)
        return cls(model, tokenizer, **kwargs)

    def step_ids(self, columns: np.ndarray, prompt_len: np.ndarray) -> np.ndarray | None:
        """The completion step of each column of observations whose prompt ends at column
        ``prompt_len`` (per row): 0 for the prompt, ``1 + t`` for column ``prompt_len - 1 + t``
        (which predicts completion token ``t``). None without position embeddings."""
        if self.position_embeddings is None:
            return None
        return np.maximum(columns[None, :] - np.asarray(prompt_len)[:, None] + 2, 0)

    @classmethod
    def tiny(
        cls,
        envs: Any,
        *,
        n_layer: int = 2,
        n_embd: int = 64,
        n_head: int = 4,
        seed: int = 0,
        **kwargs: Any,
    ) -> LMPolicy:
        """A small randomly initialised LM for ``envs`` (a textgym env or vector env), to train
        from scratch: :func:`textgym.models.tiny_lm` sized to the env's vocabulary and special
        tokens, with :class:`PositionEmbeddings` covering the observation, seeded. Learners built without a config use
        :data:`TINY_LEARNER_DEFAULTS` with it (``PPO(LMPolicy.tiny(envs), envs)``; change one
        with ``PPOConfig.for_policy(policy, seed=1)``). Other keyword arguments go to
        :class:`LMPolicy` (``precision``, ``temperature``, ...)."""
        from textgym.models import tiny_lm

        tok = envs.tokenizer
        space = getattr(envs, "single_action_space", None) or envs.action_space
        width = int(envs.observation_space["input_ids"].shape[-1])
        lm = tiny_lm(
            vocab_size=int(space.n),
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            seed=seed,
            max_positions=max(512, width),
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        kwargs.setdefault("position_embeddings", width)
        policy = cls(lm, tok, seed=seed, **kwargs)
        policy.learner_defaults = dict(TINY_LEARNER_DEFAULTS)
        return policy

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast if this policy's precision asks for it, else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def ensure_reference(self) -> None:
        """Set up the frozen reference for KL and fluency: a deepcopy of the LM in eval mode
        without gradients, or nothing with peft (the adapter is switched off instead).

        With peft, every trained parameter must belong to the adapter, since switching the
        adapter off must give the untrained model back: LoRA's ``bias="all"``/``"lora_only"``
        (trained base biases) or base weights unfrozen by hand would move the KL reference with
        training, so they raise ValueError."""
        if self.position_embeddings is not None and self.ref_positions is None:
            frozen = copy.deepcopy(self.position_embeddings).requires_grad_(False)
            object.__setattr__(self, "ref_positions", frozen)  # not trained, not checkpointed
        if self.is_peft:
            self._check_peft_reference()
            self.reference_origin = "the policy with its peft adapter switched off (base weights)"
        elif self.ref_model is None:
            ref = copy.deepcopy(self.model).eval()
            ref.requires_grad_(False)
            # Not a submodule: the reference is neither trained nor checkpointed.
            object.__setattr__(self, "ref_model", ref)
            if self.reference_origin is None:
                self.reference_origin = "a frozen copy of the policy when the learner was built"

    def _adapter_names(self) -> set[str]:
        return set(getattr(self.model, "peft_config", {}) or {})

    def _check_peft_reference(self) -> None:
        configs = getattr(self.model, "peft_config", {}) or {}
        for name, config in configs.items():
            bias = getattr(config, "bias", "none")
            if bias != "none":
                raise ValueError(
                    f"LoRA adapter {name!r} has bias={bias!r}: it trains the base model's biases, "
                    f"which switching the adapter off does not undo, so the KL reference would "
                    f"move with training; use LoraConfig(bias='none') (peft's default), or "
                    f"lora_bias=True for a bias that belongs to the adapter"
                )
        adapters = self._adapter_names()
        outside = [
            n
            for n, p in self.model.named_parameters()
            if p.requires_grad and not any(f".{a}." in f".{n}." for a in adapters)
        ]
        if outside:
            raise ValueError(
                f"{len(outside)} trainable parameter(s) are not part of the peft adapter "
                f"(e.g. {outside[:3]}): switching the adapter off would not undo their training, "
                f"so the KL reference would move; freeze them (requires_grad_(False)) or list "
                f"their modules in LoraConfig(modules_to_save=[...])"
            )

    def reference_record(self) -> dict[str, str]:
        """What the KL reference is, for checkpoints: ``origin`` (in words) and ``fingerprint``,
        a hash of the reference's weights (each tensor's name, shape, dtype and up to 4,096
        evenly spaced elements; with peft, the base weights the adapter-off model uses).
        :meth:`~agents.base.Learner.resume` compares it with the resumed learner's."""
        import hashlib

        self.ensure_reference()
        digest = hashlib.sha256()
        adapters = self._adapter_names()
        with torch.no_grad(), self._reference() as ref:
            for name, tensor in ref.named_parameters():
                if any(f".{a}." in f".{name}." for a in adapters):
                    continue  # the adapter's own weights: switched off in the reference
                flat = tensor.detach().reshape(-1)
                sample = flat[:: max(1, flat.numel() // 4096)][:4096].contiguous().cpu()
                digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
                digest.update(sample.view(torch.uint8).numpy().tobytes())
        return {"origin": str(self.reference_origin), "fingerprint": digest.hexdigest()[:24]}

    @contextlib.contextmanager
    def _reference(self) -> Iterator[nn.Module]:
        if self.ref_model is None and not self.is_peft:
            raise RuntimeError("no reference model: call policy.ensure_reference() first")
        self._reference_active = True  # _hidden uses the reference's position embeddings
        try:
            if self.ref_model is not None:
                yield self.ref_model
            else:
                with self.model.disable_adapter():
                    yield self.model
        finally:
            self._reference_active = False

    # -- trunk, value ----------------------------------------------------------------------------

    def _hidden(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        *,
        step: bool = False,
        steps: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Last-layer hidden states. Compiled (if enabled) for full sequences without a cache and,
        ``step=True``, for the static cache's one-token step; eager for prefills. ``steps``: the
        completion step of each input token (see :meth:`step_ids`), for the position embeddings
        if the policy has them (the reference's frozen copy while scoring the reference)."""
        decoder, _ = _decoder_and_head(model)
        inputs = dict(
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **{self._cache_kw: cache},
        )
        where = self.ref_positions if self._reference_active else self.position_embeddings
        if where is not None and steps is not None:
            embeds = decoder.get_input_embeddings()(input_ids)
            inputs["inputs_embeds"] = embeds + where(steps, position_ids).to(embeds.dtype)
        else:
            inputs["input_ids"] = input_ids
        if self.compile_backend and (cache is None or step):
            compiled = self._compiled_decoder(decoder, dynamic=cache is None)
            try:
                return compiled(**inputs).last_hidden_state
            except torch._dynamo.exc.TorchDynamoException as error:  # raised before running
                # compile="auto" is on for every CUDA user: a model dynamo cannot compile must
                # still train, so say so once and go on eagerly.
                warnings.warn(
                    f"torch.compile ({self.compile_backend}) failed, running eagerly from now on "
                    f"(pass compile=False to skip the attempt): {type(error).__name__}: {error}",
                    stacklevel=2,
                )
                self.compile_backend = None
        return decoder(**inputs).last_hidden_state

    def _compiled_decoder(self, decoder: nn.Module, dynamic: bool) -> Any:
        key = (id(decoder), dynamic)
        if key not in self._compiled:  # keep the decoder too, so that its id is never reused
            compiled = torch.compile(decoder, backend=self.compile_backend, dynamic=dynamic)
            self._compiled[key] = (decoder, compiled)
        return self._compiled[key][1]

    def _value(self, hidden: torch.Tensor) -> torch.Tensor:
        # Elementwise in fp32 rather than a Linear: autocast would run a Linear in bf16.
        return (hidden.float() * self.value_head.weight[0]).sum(-1) + self.value_head.bias[0]

    def _logits(self, model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The acting path's fp32 logits: the LM head runs in fp32 even under bf16 autocast, as
        in :func:`token_logprobs` (the update path), so that both score the same distribution
        (a bf16 head alone moves log-probs by ~0.02 nats per token for SmolLM2)."""
        _, head = _decoder_and_head(model)
        weight, bias = _head_weight_and_bias(head)
        with torch.autocast(hidden.device.type, enabled=False):
            bias = None if bias is None else bias.float()
            logits = F.linear(hidden.float(), weight.float(), bias)
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    # -- learning path ---------------------------------------------------------------------------

    def evaluate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        *,
        with_entropy: bool = True,
        with_values: bool = True,
        temperature: float | None = None,
        reference: bool = False,
        mask: torch.Tensor | None = None,
        support: torch.Tensor | None = None,
    ) -> TokenStats:
        """Log-probs, entropies and values of the completion tokens of full sequences.

        ``input_ids``/``attention_mask``: ``(B, P + T)`` in the env's layout (prompt left-padded
        in ``[0, P)``, completion from ``P`` on, ``P = prompt_len``), e.g. the final observation
        of an episode. Runs with gradients if they are enabled (the training path) and under the
        policy's autocast. ``reference=True`` scores with the reference model instead (no values,
        no gradients). ``temperature`` defaults to the policy's. ``mask``: bool ``(B, T)``, the
        positions to score (default: every real token after ``P``); a dialogue scores the agent's
        tokens only (its ``agent_mask``), the partner's are context. ``support``: packed sets
        (NLPO's) the distribution is renormalised over, for the reference as for the policy.
        """
        temperature = self.temperature if temperature is None else temperature
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        if mask is None:
            mask = attention_mask[:, prompt_len:].bool()
        else:
            mask = mask.to(self.device).bool()
        targets = input_ids[:, prompt_len:]
        if support is not None:
            support = support.to(self.device)[mask]
        if reference:
            with torch.no_grad(), self._reference() as ref:
                return self._evaluate(
                    ref,
                    input_ids,
                    attention_mask,
                    prompt_len,
                    mask,
                    targets,
                    temperature,
                    with_entropy,
                    False,
                    support,
                )
        return self._evaluate(
            self.model,
            input_ids,
            attention_mask,
            prompt_len,
            mask,
            targets,
            temperature,
            with_entropy,
            with_values,
            support,
        )

    def _evaluate(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_len: int,
        mask: torch.Tensor,
        targets: torch.Tensor,
        temperature: float,
        with_entropy: bool,
        with_values: bool,
        support: torch.Tensor | None = None,
    ) -> TokenStats:
        # The hidden state at position P-1+t predicts completion token t; the last position
        # predicts nothing we score, so it is not fed.
        with self.autocast():
            fed = input_ids[:, :-1]
            steps = self.step_ids(np.arange(fed.shape[1]), np.array([prompt_len]))
            hidden = self._completion_hidden(model, fed, attention_mask[:, :-1], prompt_len, steps)
            weight, bias = _head_weight_and_bias(_decoder_and_head(model)[1])  # LoRA included
            logp, ent = token_logprobs(
                hidden[mask],
                weight,
                targets[mask],
                bias=bias,
                temperature=temperature,
                with_entropy=with_entropy,
                chunk_size=self.chunk_size,
                softcap=self.softcap,
                support=support,
            )
        shape = mask.shape
        logprobs = logp.new_zeros(shape).index_put((mask,), logp)
        entropies = logp.new_zeros(shape).index_put((mask,), ent) if with_entropy else None
        values = self._value(hidden) * mask if with_values else None
        return TokenStats(logprobs, entropies, values, mask)

    def _completion_hidden(
        self,
        model: nn.Module,
        fed: torch.Tensor,
        fed_mask: torch.Tensor,
        prompt_len: int,
        steps: np.ndarray | None,
    ) -> torch.Tensor:
        """Hidden states of positions ``[P - 1, L)`` of ``fed`` ``(B, L)``: those that predict the
        completion tokens. Rows with the same prompt (a GRPO/RLOO group) share it: the distinct
        prompts run once, their KV cache rows are copied (differentiably) to every row, and the
        completions run on top, so a group of G pays one prompt forward and backward, not G.
        Every row count and shape follows from the batch alone, so the policy and its reference,
        and the rescoring and the update, score a batch by the same computation. Eager only (a
        compiled decoder keeps its one full-sequence graph)."""
        positions = _positions(fed_mask)
        width = fed.shape[1]
        shared = None
        if self.compile_backend is None and 1 < prompt_len < width and fed.shape[0] > 1:
            prompts = fed[:, :prompt_len].cpu().numpy(), fed_mask[:, :prompt_len].cpu().numpy()
            unique, inverse = _unique_rows(*prompts, None)
            if len(unique) < fed.shape[0]:
                shared = unique, inverse
        if shared is None:
            return self._hidden(model, fed, fed_mask, positions, steps=steps)[:, prompt_len - 1 :]
        device = fed.device
        u, inv = (torch.from_numpy(x).to(device) for x in shared)
        cache = self._new_cache()
        prompt = self._hidden(
            model,
            fed[u, :prompt_len],
            fed_mask[u, :prompt_len],
            positions[u, :prompt_len],
            cache,
            steps=None if steps is None else steps[:, :prompt_len],
        )
        cache.reorder_cache(inv)
        rest = self._hidden(
            model,
            fed[:, prompt_len:],
            fed_mask,
            positions[:, prompt_len:],
            cache,
            steps=None if steps is None else steps[:, prompt_len:],
        )
        return torch.cat([prompt[inv, prompt_len - 1 :], rest], dim=1)

    # -- acting ----------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Forget the KV cache; the next :meth:`act` prefills every slot."""
        self._state = None

    def _bias_for(self, action_mask: Any) -> torch.Tensor | None:
        """The additive (0 / -inf) form of an action mask, cached while the mask is unchanged."""
        if action_mask is None:
            return None
        mask = np.asarray(action_mask)
        if mask.ndim == 2 and mask.strides[0] == 0:  # a broadcast of one row (textgym's envs)
            mask = mask[0]
        if self._mask_key is None or not np.array_equal(self._mask_key, mask):
            bias = torch.zeros(mask.shape, dtype=torch.float32)
            bias[torch.from_numpy(~mask.astype(bool))] = float("-inf")
            self._mask_key, self._mask_bias = mask.copy(), bias.to(self.device)
        return self._mask_bias

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=_decoder_and_head(self.model)[0].config)

    @torch.no_grad()
    def act(
        self,
        obs: dict[str, np.ndarray],
        action_mask: Any = None,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        ignore: np.ndarray | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        support: torch.Tensor | None = None,
    ) -> ActOutput:
        """Choose the next token of every slot of a textgym vector-env observation.

        Slots with ``num_generated == 0`` (new prompts, e.g. after an autoreset) are prefilled;
        the others feed the one token the env appended since the last call, or, when the env
        appended several (a dialogue partner's reply), are prefilled again up to the last one.
        ``ignore``: bool ``(N,)``, slots whose outputs the caller discards (finished episodes the caller keeps
        stepping, as ``generate`` keeps padding finished rows): they are neither prefilled nor
        attended to, and are rebuilt from their observation if used again. ``action_mask``: the
        env's ``action_masks()`` (filters sampling). ``support``: bool ``(N, V)``, restricts the
        distribution itself (see :func:`sample_tokens`); it comes back packed in the output, for
        the update to score the same distribution. Top-k/top-p (``top_k``, ``top_p`` or the
        policy's) truncate the distribution the same way: their kept set is returned as the
        support (see the module docstring). With bf16 precision, wrap a
        stream of calls in ``with policy.autocast():`` so that the weights are cast once, not at
        every call (:func:`~agents.rollout.collect_rollout` does).
        """
        ids_np, mask_np = obs["input_ids"], obs["attention_mask"]
        n, length = ids_np.shape
        num_generated = obs["num_generated"].reshape(n)
        # The last real token of each row: the prompt's last token right after a reset, else the
        # token the env appended last step (at P + num_generated - 1).
        last = length - 1 - np.argmax(mask_np[:, ::-1], axis=1)
        # The completion step of every column (the prompt ends at last - num_generated).
        steps = self.step_ids(np.arange(length), last - num_generated + 1)
        ignore = np.zeros(n, dtype=bool) if ignore is None else np.asarray(ignore, dtype=bool)
        state = self._state
        if state is None or state.mask.shape[0] != n or (num_generated == 0).all():
            rebuild = np.ones(n, dtype=bool)
        else:
            # A slot that was ignored has a stale cache row: rebuild it when it is used again.
            # So is one whose observation gained several tokens since (a dialogue partner's reply
            # after the agent's end of turn): its row is re-prefilled up to the last token.
            jumped = num_generated > state.seen + 1 if state.seen is not None else np.zeros(n, bool)
            rebuild = ((num_generated == 0) | state.stale | jumped) & ~ignore

        device = self.device
        with self.autocast():
            if rebuild.all():
                hidden = self._prefill_all(ids_np, mask_np, last, steps)
            else:
                hidden = self._step_rows(ids_np, last, rebuild | ignore, steps)
                if rebuild.any():
                    rows = np.flatnonzero(rebuild)
                    hidden[torch.from_numpy(rows).to(device)] = self._prefill_rows(
                        ids_np[rows],
                        mask_np[rows],
                        last[rows],
                        rows,
                        None if steps is None else steps[rows],
                    )
            logits = self._logits(self.model, hidden)
        self._state.stale = (self._state.stale | ignore) & ~rebuild
        self._state.seen = num_generated.copy()
        temperature = self.temperature if temperature is None else temperature
        top_k = self.top_k if top_k is None else top_k
        top_p = self.top_p if top_p is None else top_p
        mask_bias = self._bias_for(action_mask)
        if not deterministic:
            # Top-k/top-p truncate the distribution sampled from: its set becomes the step's
            # support (returned packed), so that the update scores that same distribution.
            kept = sampling_support(
                logits,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                mask_bias=mask_bias,
                support=support,
            )
            if kept is not None:
                support, top_k, top_p = kept, 0, 1.0
        tokens, logp = sample_tokens(
            logits,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            mask_bias=mask_bias,
            support=support,
            deterministic=deterministic,
            generator=generator,
        )
        packed = None if support is None else pack_support(support)
        return ActOutput(tokens.cpu().numpy(), logp, self._value(hidden), packed)

    def _prefill_all(
        self, ids: np.ndarray, mask: np.ndarray, last: np.ndarray, steps: np.ndarray | None
    ) -> torch.Tensor:
        """A fresh cache holding every row's context up to its last real token."""
        width = int(last.max()) + 1
        first = int(np.argmax(mask[:, :width].any(0)))  # skip columns that are padding in all rows
        device = self.device
        steps = None if steps is None else steps[:, first:width]
        ids_t = torch.from_numpy(ids[:, first:width]).to(device)
        mask_t = torch.from_numpy(mask[:, first:width]).to(device)
        stale = np.zeros(len(ids), dtype=bool)
        if self.kv_cache == "static":
            cache, buffer = self._static_buffers(len(ids), ids.shape[1])
            buffer[:, : width - first] = mask_t
            # The static cache's mask always spans all of its columns (a fixed shape).
            hidden = self._hidden(self.model, ids_t, buffer, _positions(mask_t), cache, steps=steps)
            self._state = _CacheState(cache, buffer, mask_t.sum(-1), stale, column=width - first)
        else:
            cache = self._new_cache()
            # Rows with the same context (a GRPO/RLOO group's prompt) are prefilled once and
            # their cache rows copied: a group of G costs one row's prefill, not G.
            unique, inverse = _unique_rows(ids[:, first:width], mask[:, first:width], steps)
            if len(unique) < len(ids):
                u = torch.from_numpy(unique).to(device)
                hidden = self._hidden(
                    self.model,
                    ids_t[u],
                    mask_t[u],
                    _positions(mask_t[u]),
                    cache,
                    steps=None if steps is None else steps[unique],
                )
                inverse_t = torch.from_numpy(inverse).to(device)
                cache.reorder_cache(inverse_t)
                hidden = hidden[inverse_t]
            else:
                hidden = self._hidden(
                    self.model, ids_t, mask_t, _positions(mask_t), cache, steps=steps
                )
            # clone: from_numpy shares memory with the env's arrays, which the env may reuse.
            self._state = _CacheState(cache, mask_t.clone(), mask_t.sum(-1), stale)
        rows = torch.arange(len(ids), device=device)
        return hidden[rows, torch.from_numpy(last - first).to(device)]

    def _static_buffers(self, n: int, length: int) -> tuple[Any, torch.Tensor]:
        """The static cache and its ``(N, L)`` mask buffer, zeroed; reused while the shape holds
        (the same tensors, so a compiled step keeps its graph). ``L`` = the observation width plus
        slack, so that a full cache is compacted at most every ``slack`` steps."""
        from transformers import StaticCache

        columns = length + max(16, length // 4)
        if self._static is None or self._static[1].shape != (n, columns):
            config = _decoder_and_head(self.model)[0].config
            buffer = torch.zeros(n, columns, dtype=torch.long, device=self.device)
            self._static = (StaticCache(config=config, max_cache_len=columns), buffer)
        cache, buffer = self._static
        cache.reset()  # zeroes K/V (allocated at the first forward, in its dtype) and the counters
        buffer.zero_()
        return cache, buffer

    def _step_rows(
        self, ids: np.ndarray, last: np.ndarray, skip: np.ndarray, steps: np.ndarray | None
    ) -> torch.Tensor:
        """Feed every row its last token (one new cache column); ``skip`` rows get a masked column
        (they are rebuilt next, or ignored)."""
        state, device = self._state, self.device
        n = len(ids)
        tokens = torch.from_numpy(ids[np.arange(n), last]).to(device)[:, None]
        steps = None if steps is None else steps[np.arange(n), last][:, None]
        fed = torch.from_numpy(~skip).to(device=device, dtype=state.mask.dtype)
        if state.column is None:
            state.mask = torch.cat([state.mask, fed[:, None]], dim=1)
            hidden = self._hidden(
                self.model, tokens, state.mask, state.next_pos[:, None], state.cache, steps=steps
            )
        else:
            if state.column == state.mask.shape[1]:
                self._compact()
            column = state.column
            # A skipped row attends to its new column only: its output is discarded and its row
            # rebuilt before use, and it must not pin old columns against compaction.
            if skip.any():  # masked_fill_, not boolean indexing: no device sync per step
                state.mask.masked_fill_(torch.from_numpy(skip).to(device)[:, None], 0)
            state.mask[:, column] = 1
            hidden = self._hidden(
                self.model,
                tokens,
                state.mask,
                state.next_pos[:, None],
                state.cache,
                step=True,
                steps=steps,
            )
            state.column = column + 1
        state.next_pos += fed
        return hidden[:, -1]

    def _compact(self) -> None:
        """Static cache: drop the leading columns no row attends to, shifting the rest left in
        place (the tensors keep their addresses)."""
        state = self._state
        column = state.column
        first = int(state.mask[:, :column].any(0).to(torch.int8).argmax())
        if first == 0:  # cannot happen: every row attends to at most its observation's columns
            raise RuntimeError("the static KV cache is full; use kv_cache='dynamic'")
        self._shift_columns(-first)

    def _shift_columns(self, delta: int) -> None:
        """Static cache: move columns ``[0, column)`` by ``delta`` (< 0: left, dropping the first
        ``-delta``; > 0: right), zero what they leave, and move the write column with them."""
        state = self._state
        column = state.column
        tensors = [t for layer in state.cache.layers for t in (layer.keys, layer.values)]
        for t, dim in [(t, 2) for t in tensors] + [(state.mask, 1)]:
            src = t.narrow(dim, max(0, -delta), column - max(0, -delta)).clone()  # overlaps dst
            t.narrow(dim, 0, column + max(0, delta)).zero_()
            t.narrow(dim, max(0, delta), src.shape[dim]).copy_(src)
        state.column = column + delta
        for layer in state.cache.layers:
            layer.cumulative_length.fill_(state.column)  # the write position of StaticLayer

    def _prefill_rows(
        self,
        ids: np.ndarray,
        mask: np.ndarray,
        last: np.ndarray,
        rows: np.ndarray,
        steps: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Prefill ``rows`` on their own and write their K/V into the shared cache, right-aligned."""
        state, device = self._state, self.device
        width = int(last.max()) + 1
        ids_t = torch.from_numpy(ids[:, :width]).to(device)
        mask_t = torch.from_numpy(mask[:, :width]).to(device)
        sub = self._new_cache()
        steps = None if steps is None else steps[:, :width]
        hidden = self._hidden(self.model, ids_t, mask_t, _positions(mask_t), sub, steps=steps)
        layers = state.cache.layers
        expected = "DynamicLayer" if state.column is None else "StaticLayer"
        if any(type(layer).__name__ != expected for layer in layers):
            raise NotImplementedError(
                "restarting some env slots needs a cache without sliding-window layers; "
                "reset all slots together (envs.reset) or call policy.reset_state()"
            )
        rows_t = torch.from_numpy(rows).to(device)
        if state.column is None:
            columns = state.mask.shape[1]
            if width > columns:  # the new prompt is longer than the cache: widen it on the left
                for layer in layers:
                    layer.keys = F.pad(layer.keys, (0, 0, width - columns, 0))
                    layer.values = F.pad(layer.values, (0, 0, width - columns, 0))
                state.mask = F.pad(state.mask, (width - columns, 0))
                columns = width
            before, after = columns - width, 0
        else:
            if width > state.column:  # not enough columns left of the write column: shift right
                self._shift_columns(width - state.column)
            before, after = state.column - width, state.mask.shape[1] - state.column
        for layer, new in zip(layers, sub.layers):
            for name in ("keys", "values"):
                old = getattr(layer, name)
                old[rows_t] = F.pad(getattr(new, name).to(old.dtype), (0, 0, before, after))
        state.mask[rows_t] = F.pad(mask_t.to(state.mask.dtype), (before, after))
        state.next_pos[rows_t] = mask_t.sum(-1).to(state.next_pos.dtype)
        if state.column is None:
            # Crop leading columns no row attends to any more: the cache stays within P + T.
            first = int(state.mask.any(0).to(torch.int8).argmax())
            if first > 0:
                for layer in layers:
                    layer.keys = layer.keys[..., first:, :]
                    layer.values = layer.values[..., first:, :]
                state.mask = state.mask[:, first:]
        return hidden[torch.arange(len(rows), device=device), torch.from_numpy(last).to(device)]

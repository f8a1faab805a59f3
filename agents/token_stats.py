"""Per-token statistics of completions: log-probs of the chosen tokens, entropies.

With a 49k vocabulary the logits of a batch are the largest tensor by far (16 x 256 tokens x
49,152 x 4 bytes = 805 MB, and ``log_softmax`` doubles it), so :func:`token_logprobs` never builds
them for the whole batch: it takes the hidden states of *completion positions only* and runs the
LM head on a chunk of rows at a time, each chunk reducing straight to (log-prob, entropy). With
gradients a hand-written backward (:class:`_ChunkedLogprobs`) recomputes each chunk's softmax
instead of keeping it, except when all rows' log-softmax fits in ``KEEP_ELEMENTS`` (128 MiB: a
batch of 16 x 32 tokens at SmolLM2's vocabulary), which backward then reuses (one LM-head matmul
of four saved). The LM head runs in fp32, also under bf16 autocast (see ``policy.py``).

A *support* (a set of allowed tokens per position: NLPO's mask, or the top-k/top-p set a step
was sampled from) renormalises the distribution over that set; rollouts keep supports packed,
8 tokens per byte (:func:`pack_support`). :func:`naive_token_logprobs` is the textbook version,
for tests and the memory benchmark. :class:`TokenStats` is what
:meth:`~agents.policy.LMPolicy.token_stats` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

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
    in fp32 even under bf16 autocast, as :meth:`~agents.policy.LMPolicy.act` does when sampling:
    a bf16 head rounds each logit to 3 significant digits, and acting and the update would score
    different distributions (SmolLM2, bf16 head: ~0.02 nats per token apart). Returns fp32
    ``(M,)`` tensors (entropy None if not asked for). A bias or a final-logit softcap falls back
    to per-chunk activation checkpointing.
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

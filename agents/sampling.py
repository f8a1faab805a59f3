"""Drawing the next token from fp32 logits: temperature, top-k, top-p and masks.

:func:`sample_tokens` draws one token per row and returns its log-prob. Three things restrict what
can be drawn, differently:

* the env's **action mask** (``mask_bias``) only filters *sampling*: the log-probs are those of
  the unmasked ``softmax(logits / temperature)``;
* a **support** restricts the distribution itself, renormalised over it (NLPO's mask policy);
* **top-k / top-p** truncate the distribution sampled from; the log-probs are those of the
  truncated, renormalised distribution. :func:`sampling_support` gives the kept set, which
  :meth:`~agents.policy.LMPolicy.act` records as the step's support, so that the update scores
  the distribution actions were actually drawn from (see ``policy.py``).

:func:`top_p_mask` is the one definition of the top-p set, for top-p sampling and NLPO's mask.
"""

from __future__ import annotations

import torch


def top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Bool ``(N, V)``: the top-p set of each row of ``softmax(logits)``, the smallest set of most
    likely tokens holding at least ``top_p`` of the mass.

    The boundary rule: a token is in the set when the tokens ranked above it hold *less* than
    ``top_p`` of the mass. So the top token always is, and a token that would only add mass past
    an already reached ``top_p`` is not (the rule of transformers' ``TopPLogitsWarper``)."""
    probs = torch.softmax(logits.float(), dim=-1)
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    keep_sorted = (sorted_probs.cumsum(-1) - sorted_probs) < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


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
    renormalised distribution (:meth:`~agents.policy.LMPolicy.act` records the kept set, see
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
        filtered = filtered.masked_fill(~top_p_mask(filtered, top_p), float("-inf"))
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

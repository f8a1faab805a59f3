"""LM-based scorers: a reference causal LM (SmolLM2-135M by default) rates the text.

* :class:`LMScore`: ``log p_ref(completion | prompt)`` (mean, sum or perplexity);
* :class:`LMJudge`: the log-odds of two answers to a question about the text (by default a
  sentiment judge, :data:`DEFAULT_JUDGE_TEMPLATE`).

The model is loaded on first use by :func:`textgym.models.load_lm` (torch is imported then, not
when textgym is), and runs batched, in eval mode, without gradients, on the GPU when there is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from textgym.rewards.base import BaseScorer, scorer_batch


class _LMScorer(BaseScorer):
    """Holds a causal LM (a name for :func:`textgym.models.load_lm`, loaded on first use, or
    a model object) and its tokenizer, and runs batched no-grad forward passes on
    ``resolve_device(device)`` (CUDA when available)."""

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        device: Any = None,
        dtype: Any = None,
        batch_size: int = 16,
        max_length: int = 512,
    ):
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self.model_name = model if isinstance(model, str) else None
        self._model = None if isinstance(model, str) else model
        self._tokenizer = tokenizer
        self.device, self.dtype = device, dtype
        self.batch_size, self.max_length = batch_size, max_length
        if self._model is not None:
            if tokenizer is None:
                raise ValueError("pass tokenizer= with a model object (or a model name)")
            self._model.eval()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.model_name is not None:  # reloaded by name on first use
            state["_model"] = None
        return state

    def _load(self) -> tuple[Any, Any, Any]:
        import torch

        from textgym.models import load_lm, load_tokenizer, resolve_device

        if self._model is None:
            self._model, tok = load_lm(self.model_name, device=self.device, dtype=self.dtype)
            self._tokenizer = self._tokenizer or tok
        elif isinstance(self._tokenizer, str):
            self._tokenizer = load_tokenizer(self._tokenizer)
        device = next(self._model.parameters()).device
        if self.device is not None and device != resolve_device(self.device):
            self._model.to(resolve_device(self.device))
            device = resolve_device(self.device)
        return self._model, self._tokenizer, torch.device(device)

    def _ids(self, tok: Any, text: str, special: bool) -> list[int]:
        return list(tok(text, add_special_tokens=special)["input_ids"]) if text else []


class LMScore(_LMScorer):
    """How likely a reference LM finds the completion: ``log p_ref(completion | prompt)``.

    Args:
        model: a name for :func:`~textgym.models.load_lm` (default ``"smollm2-135m"``, loaded
            on first use) or a causal LM object (then pass ``tokenizer``).
        reduction: ``"mean_logprob"`` (default: mean per-token log-likelihood, ``<= 0``),
            ``"sum_logprob"``, or ``"perplexity"`` (``exp(-mean_logprob)``, LOWER is better).
        condition_on_prompt: score the completion after the prompt (default) or alone.
        batch_size, max_length: forward passes take ``batch_size`` texts of at most
            ``max_length`` tokens (longer prompts lose their beginning).
        device, dtype: see :func:`~textgym.models.resolve_device` (CUDA when available).

    The prompt is tokenized with the tokenizer's special tokens (BOS), the completion without,
    and the two id lists are concatenated. An empty completion scores as a uniform guess over
    the vocabulary: ``-log V`` (mean/sum) or ``V`` (perplexity). Deterministic (eval mode,
    ``torch.no_grad``).
    """

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        reduction: str = "mean_logprob",
        condition_on_prompt: bool = True,
        batch_size: int = 16,
        max_length: int = 512,
        device: Any = None,
        dtype: Any = None,
    ):
        if reduction not in ("mean_logprob", "sum_logprob", "perplexity"):
            raise ValueError(
                f"reduction must be mean_logprob, sum_logprob or perplexity, got {reduction!r}"
            )
        super().__init__(model, tokenizer, device, dtype, batch_size, max_length)
        self.reduction = reduction
        self.condition_on_prompt = condition_on_prompt
        self.reward_range = (
            (0.0, float("inf")) if reduction == "perplexity" else (-float("inf"), 0.0)
        )

    def token_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> list[np.ndarray]:
        """Per-token ``log p_ref`` of each completion's tokens (an empty array when empty)."""
        import torch

        model, tok, device = self._load()
        seqs, starts = [], []
        for p, c in zip(prompts, completions):
            context = self._ids(tok, p, True) if self.condition_on_prompt else []
            if not context:
                start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
                context = [int(start_id if start_id is not None else 0)]
            completion = self._ids(tok, c, False)[: self.max_length - 1]
            context = context[-(self.max_length - len(completion)) :]
            seqs.append(context + completion)
            starts.append(len(context))
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # less padding
        with torch.no_grad():
            for b in range(0, len(order), self.batch_size):
                idx = [i for i in order[b : b + self.batch_size] if len(seqs[i]) > starts[i]]
                if not idx:
                    continue
                width = max(len(seqs[i]) for i in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                    mask[row, : len(seqs[i])] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                for row, i in enumerate(idx):
                    s, e = starts[i], len(seqs[i])
                    lp = torch.log_softmax(logits[row, s - 1 : e - 1].float(), dim=-1)
                    target = ids[row, s:e].to(lp.device)
                    out[i] = lp.gather(1, target[:, None])[:, 0].cpu().numpy()
        return out

    def __call__(self, prompts, completions, references=None):
        prompts, completions, references = scorer_batch(prompts, completions, references)
        if not completions:
            return np.zeros(0, dtype=np.float32)
        per_token = self.token_logprobs(prompts, completions)
        vocab = self._model.config.vocab_size
        scores = []
        for lp in per_token:
            if lp.size == 0:
                scores.append(float(vocab) if self.reduction == "perplexity" else -np.log(vocab))
            elif self.reduction == "mean_logprob":
                scores.append(float(lp.mean()))
            elif self.reduction == "sum_logprob":
                scores.append(float(lp.sum()))
            else:
                scores.append(float(np.exp(min(-lp.mean(), 80.0))))
        return np.array(scores, dtype=np.float32)


DEFAULT_JUDGE_TEMPLATE = (
    'Review: "{prompt}{completion}"\n'
    "Question: Is the sentiment of this review positive or negative?\n"
    "Answer:"
)


class LMJudge(_LMScorer):
    """Ask a reference LM a question about the text: ``log p(yes-label) - log p(no-label)``.

    The default template and choices make it a sentiment judge: the log-odds of " positive"
    vs " negative" as the next token after ``template.format(prompt=..., completion=...,
    reference=...)``. Each choice is scored by its first token. Scores are real numbers
    (positive = the first choice is more likely); pass ``squash=True`` for ``sigmoid`` of the
    log-odds, i.e. ``p(first) / (p(first) + p(second))`` in [0, 1].

    Args:
        model, tokenizer, device, dtype, batch_size, max_length: as in :class:`LMScore`.
        template: a ``str.format`` template with ``{prompt}``, ``{completion}`` and optionally
            ``{reference}`` (the first reference, or "").
        choices: the (first, second) label strings.
    """

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        template: str = DEFAULT_JUDGE_TEMPLATE,
        choices: tuple[str, str] = (" positive", " negative"),
        squash: bool = False,
        batch_size: int = 16,
        max_length: int = 512,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(model, tokenizer, device, dtype, batch_size, max_length)
        if len(choices) != 2 or not all(choices):
            raise ValueError(f"choices must be two non-empty strings, got {choices!r}")
        self.template, self.choices, self.squash = template, tuple(choices), squash
        self.reward_range = (0.0, 1.0) if squash else (-float("inf"), float("inf"))

    def __call__(self, prompts, completions, references=None):
        import torch

        from textgym.models import position_ids

        prompts, completions, references = scorer_batch(prompts, completions, references)
        if not completions:
            return np.zeros(0, dtype=np.float32)
        model, tok, device = self._load()
        first, second = (self._ids(tok, c, False)[0] for c in self.choices)
        if first == second:
            raise ValueError(f"the choices {self.choices} start with the same token")
        seqs = []
        for p, c, r in zip(prompts, completions, references):
            text = self.template.format(prompt=p, completion=c, reference=r[0] if r else "")
            seqs.append(self._ids(tok, text, True)[-self.max_length :])
        scores = np.zeros(len(seqs), dtype=np.float64)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with torch.no_grad():
            for b in range(0, len(seqs), self.batch_size):
                chunk = seqs[b : b + self.batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, s in enumerate(chunk):  # left padding: the next token is at -1
                    ids[row, width - len(s) :] = torch.tensor(s)
                    mask[row, width - len(s) :] = 1
                logits = (
                    model(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        position_ids=position_ids(mask).to(device),
                    )
                    .logits[:, -1]
                    .float()
                )
                lp = torch.log_softmax(logits, dim=-1)
                scores[b : b + len(chunk)] = (lp[:, first] - lp[:, second]).cpu().numpy()
        if self.squash:
            scores = 1.0 / (1.0 + np.exp(-scores))
        return scores.astype(np.float32)

"""``evaluate``: reward (mean and 95% CI), success rate, KL to the reference, fluency, diversity,
samples; ``verdict``: did a run learn (collapsed, no better than its reference, or learned)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents import distributed
from agents.policy import LMPolicy
from agents.rollout import collect_rollout
from agents.update import select

COLLAPSED = 0.1  # below this share of distinct completions, a policy has collapsed
EMPTY_COLLAPSED = 0.5  # at or above this share of empty completions, too


@dataclass
class EvalResult:
    """What :func:`evaluate` measured over ``n_episodes`` episodes.

    Attributes:
        reward_mean, reward_std: of the episode returns (the task scores for sparse rewards).
        reward_ci: a 95% percentile-bootstrap confidence interval of the mean (2000 resamples,
            seeded): it lies within the returns' own range, so a reward bounded in [0, 1] never
            gets a bound below 0 or above 1 (a normal-approximation interval can).
        kl: KL(pi || ref) per completion (nats), estimated from the sampled tokens with the
            "k3" estimator: the sum over the completion's tokens of ``exp(r) - 1 - r``, ``r =
            log ref - log pi`` (Schulman, 2020), unbiased and never negative (the plain ``-r``
            is unbiased too, but a sample of it can be negative).
        perplexity: of the completions under the reference model (fluency; lower is better).
        distinct_1, distinct_2: distinct word uni-/bigrams over all n-grams (diversity).
        mean_length: completion tokens per episode.
        samples: the first few (prompt, completion, score) rows.
        entropy: mean per-token entropy of the policy (nats) over the completions' tokens, when
            ``evaluate(..., with_entropy=True)`` measured it (NaN otherwise).
        outcomes: on a verifiable task (an env that reports ``info["outcome"]``), how many
            episodes ended ``"correct"``, ``"partial"``, ``"wrong"`` or ``"format_error"``
            (empty otherwise).
        success_rate, success_ci: the share of ``"correct"`` episodes and its 95% Wilson interval
            (NaN without outcomes). Partial credit counts in the reward, not here.
        distinct, empty: the share of distinct completions and of empty ones (collapse signs:
            :func:`verdict`).
    """

    n_episodes: int
    reward_mean: float
    reward_std: float
    reward_ci: tuple[float, float]
    kl: float
    perplexity: float
    distinct_1: float
    distinct_2: float
    mean_length: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    entropy: float = math.nan
    outcomes: dict[str, int] = field(default_factory=dict)
    success_rate: float = math.nan
    success_ci: tuple[float, float] = (math.nan, math.nan)
    distinct: float = math.nan
    empty: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """The scalar figures as a dict (no samples; ``entropy`` only when it was measured)."""
        out = {
            "n_episodes": self.n_episodes,
            "reward_mean": self.reward_mean,
            "reward_std": self.reward_std,
            "reward_ci_low": self.reward_ci[0],
            "reward_ci_high": self.reward_ci[1],
            "kl": self.kl,
            "perplexity": self.perplexity,
            "distinct_1": self.distinct_1,
            "distinct_2": self.distinct_2,
            "mean_length": self.mean_length,
            "distinct": self.distinct,
            "empty": self.empty,
        }
        if math.isfinite(self.entropy):
            out["entropy"] = self.entropy
        if self.outcomes:
            out["outcomes"] = dict(self.outcomes)
            out["success_rate"] = self.success_rate
            out["success_ci_low"], out["success_ci_high"] = self.success_ci
        return out

    def table(self) -> str:
        """The samples as a Markdown table."""

        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        rows = ["| prompt | completion | score |", "|---|---|---|"]
        rows += [
            f"| {cell(s['prompt'])} | {cell(s['completion'])} | {s['score']:.3f} |"
            for s in self.samples
        ]
        return "\n".join(rows)

    def __str__(self) -> str:
        lo, hi = self.reward_ci
        success = ""
        if self.outcomes:
            s_lo, s_hi = self.success_ci
            success = f"success {self.success_rate:.3f} (95% CI {s_lo:.3f}..{s_hi:.3f}), "
        return (
            f"reward {self.reward_mean:.4f} (95% CI {lo:.4f}..{hi:.4f}, n={self.n_episodes}), "
            f"{success}KL (k3) {self.kl:.3f}, perplexity {self.perplexity:.2f}, "
            f"distinct-1/2 {self.distinct_1:.3f}/{self.distinct_2:.3f}, "
            f"length {self.mean_length:.1f}, distinct completions {self.distinct:.2f}, "
            f"empty {self.empty:.2f}"
        )


def bootstrap_interval(
    values: np.ndarray, seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """The 95% percentile-bootstrap interval of the mean of ``values``: the 2.5th and 97.5th
    percentiles of ``resamples`` means of resamples with replacement (seeded by ``seed``). It
    lies within ``[min(values), max(values)]``, so it respects any bounds the values have."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 200):  # 200 resamples at a time: bounded memory
        stop = min(start + 200, resamples)
        means[start:stop] = values[rng.integers(0, len(values), (stop - start, len(values)))].mean(
            1
        )
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for ``z=1.96``); sound at 0 and n."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def distinct_share(completions: list[str]) -> float | None:
    """Distinct completions / completions (1: all different; 1/n: all the same)."""
    return len(set(completions)) / len(completions) if completions else None


def _figures(result: Any) -> dict[str, Any]:
    """distinct, empty, reward_ci_low, reward_ci_high of an :class:`EvalResult` or of a dict
    with those keys (a benchmark row); a missing figure is None."""
    figures = result.as_dict() if isinstance(result, EvalResult) else dict(result)
    out = {k: figures.get(k) for k in ("distinct", "empty", "reward_ci_low", "reward_ci_high")}
    return {k: v if v is not None and math.isfinite(v) else None for k, v in out.items()}


def verdict(result: Any, references: Mapping[str, Any]) -> str:
    """Did ``result`` learn, compared with ``references`` (name -> the untrained model's or a
    random policy's figures)? ``result`` and each reference: an :class:`EvalResult` or a dict
    with ``distinct``, ``empty``, ``reward_ci_low``, ``reward_ci_high`` (a leaderboard row).

    * ``"collapsed"``: its completions are (nearly) all the same (the share of distinct ones
      below :data:`COLLAPSED`) or at least half are empty (:data:`EMPTY_COLLAPSED`), whatever
      its reward: a policy that games the scorer with one string is not a learned one.
    * ``"= NAME"``: its reward's 95% CI overlaps the reference's: no measurable change.
    * ``"< NAME"``: its CI lies wholly below the reference's: worse than where it started.
    * ``"learned"``: its CI lies above every reference's.

    The leaderboard (``benchmarks``), ``textgym train --eval-episodes`` and the demo print it.
    """
    f = _figures(result)
    if (f["distinct"] is not None and f["distinct"] < COLLAPSED) or (
        f["empty"] is not None and f["empty"] >= EMPTY_COLLAPSED
    ):
        return "collapsed"
    lo, hi = f["reward_ci_low"], f["reward_ci_high"]
    for name, reference in references.items():
        ref = _figures(reference)
        if None in (lo, hi, ref["reward_ci_low"], ref["reward_ci_high"]):
            continue
        if lo <= ref["reward_ci_high"] and ref["reward_ci_low"] <= hi:
            return f"= {name}"
        if hi < ref["reward_ci_low"]:
            return f"< {name}"
    return "learned"


VERDICT_TEXT = {
    "collapsed": "collapsed: (nearly) all completions the same, or half of them empty",
    "=": "not learned: the reward's 95% CI overlaps the {name} model's",
    "<": "worse: the reward's 95% CI lies below the {name} model's",
    "learned": "learned: the reward's 95% CI lies above the {name} model's",
}


def verdict_line(after: Any, before: Any, name: str = "untrained") -> str:
    """``"verdict: ..."``, the sentence for :func:`verdict` of ``after`` against ``before``."""
    v = verdict(after, {name: before})
    key = v.split()[0] if v[0] in "=<" else v
    return "verdict: " + VERDICT_TEXT[key].format(name=name)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams over ``texts`` (Li et al., 2016)."""
    grams = [tuple(w[i : i + n]) for w in (t.split() for t in texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def evaluate(
    agent: Any,
    envs: Any,
    n_episodes: int = 100,
    split: str = "test",
    *,
    deterministic: bool = False,
    seed: int = 0,
    num_samples: int = 8,
    gather: bool = False,
    with_entropy: bool = False,
    with_reference: bool = True,
) -> EvalResult:
    """Run ``n_episodes`` episodes of ``agent`` (a learner or an :class:`LMPolicy`) on ``envs``.

    Episodes are collected ``envs.num_envs`` at a time from ``split``, with their own seeded
    RNGs (the learner's RNGs are not touched, so evaluating does not change a run).
    ``deterministic`` decodes greedily. The reference model is the policy's (a frozen copy, or
    the LoRA adapter switched off); before any training KL is 0. A learner acts as in training
    (NLPO: under its mask policy's top-p sets; its KL is that of the renormalised policy, above 0
    from the start).

    ``gather=True`` under torchrun / accelerate launch (every rank must call it): each rank runs
    ``ceil(n_episodes / world_size)`` episodes seeded ``seed + rank``, and every rank returns the
    figures over all ranks' episodes. Without a process group it is the plain call.

    ``with_entropy=True`` also measures the policy's mean per-token entropy over the completions
    (``EvalResult.entropy``; a collapsed policy has entropy near 0).

    ``with_reference=False`` skips the two full forward passes per batch (policy and reference)
    behind ``kl`` and ``perplexity``, which are then NaN: about half an evaluation's time for a
    success rate or a mean reward alone.
    """
    info = distributed.current() if gather else distributed.DistInfo()
    if info.enabled:
        n_episodes, seed = math.ceil(n_episodes / info.world_size), seed + info.rank
    policy: LMPolicy = agent.policy if hasattr(agent, "policy") else agent
    actor = agent.acting_policy() if hasattr(agent, "acting_policy") else policy
    policy.ensure_reference()
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    kls: list[float] = []
    nll, tokens = 0.0, 0
    entropy_sum = 0.0
    prompts: list[str] = []
    completions: list[str] = []
    lengths: list[int] = []
    outcomes: list[str | None] = []
    while len(scores) < n_episodes:
        seeds = rng.integers(0, 2**31 - 1, size=envs.num_envs).tolist()
        ro = collect_rollout(
            actor, envs, seeds=seeds, split=split, deterministic=deterministic, generator=generator
        )
        take = min(ro.num_envs, n_episodes - len(scores))
        # The episodes' columns that are padding in every row (prompt padding on the left, the
        # budget no completion used on the right) are cut: the same figures for less work.
        batch = {"input_ids": ro.input_ids, "attention_mask": ro.attention_mask, "mask": ro.mask}
        if ro.support is not None:
            batch["support"] = ro.support
        mb, prompt_len = select(batch, torch.arange(take), ro.prompt_len)
        ids, attn, mask = mb["input_ids"], mb["attention_mask"], mb["mask"]
        # Both sides recomputed the same way (not the acting-time log-probs, which differ from a
        # full forward by bf16 rounding), so an untrained policy has KL exactly 0.
        if with_reference or with_entropy:
            logp = policy.token_stats(
                ids,
                attn,
                prompt_len,
                with_entropy=with_entropy,
                with_values=False,
                mask=mask,
                support=mb.get("support"),
            )
        if with_entropy:
            entropy_sum += float(logp.entropies.sum())
        if with_reference:
            ref = policy.token_stats(
                ids, attn, prompt_len, with_entropy=False, reference=True, mask=mask
            ).logprobs
            log_ratio = (ref - logp.logprobs).double()  # 0 outside the completion
            kls += (log_ratio.exp() - 1 - log_ratio).sum(-1).tolist()  # k3: >= 0 term by term
            if policy.temperature != 1.0:  # fluency is judged by the reference itself, at T = 1
                ref = policy.token_stats(
                    ids,
                    attn,
                    prompt_len,
                    with_entropy=False,
                    reference=True,
                    temperature=1.0,
                    mask=mask,
                ).logprobs
            nll -= float(ref.sum())
        tokens += int(mask.sum())
        scores += ro.episode_returns[:take].tolist()
        prompts += ro.prompts[:take]
        completions += ro.completions[:take]
        lengths += ro.lengths[:take].tolist()
        outcomes += ro.outcomes[:take] if ro.outcomes is not None else [None] * take
    if info.enabled:  # rank order, so the samples are rank 0's first
        parts = distributed.gather_objects(
            (scores, kls, nll, tokens, prompts, completions, lengths, entropy_sum, outcomes)
        )
        scores, kls, prompts, completions, lengths, outcomes = (
            [x for part in parts for x in part[i]] for i in (0, 1, 4, 5, 6, 8)
        )
        nll, tokens = sum(part[2] for part in parts), sum(part[3] for part in parts)
        entropy_sum = sum(part[7] for part in parts)
    values = np.asarray(scores, dtype=np.float64)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    samples = [
        {"prompt": p, "completion": c, "score": s}
        for p, c, s in list(zip(prompts, completions, scores))[:num_samples]
    ]
    for sample, outcome in zip(samples, outcomes):
        if outcome is not None:
            sample["outcome"] = outcome
    labelled = [o for o in outcomes if o is not None]
    counts = {label: labelled.count(label) for label in sorted(set(labelled))}
    correct = counts.get("correct", 0)
    return EvalResult(
        n_episodes=len(values),
        reward_mean=mean,
        reward_std=std,
        reward_ci=bootstrap_interval(values, seed),
        kl=float(np.mean(kls)) if kls else math.nan,
        perplexity=math.exp(nll / max(tokens, 1)) if kls else math.nan,
        distinct_1=distinct_n(completions, 1),
        distinct_2=distinct_n(completions, 2),
        mean_length=float(np.mean(lengths)),
        samples=samples,
        entropy=entropy_sum / max(tokens, 1) if with_entropy else math.nan,
        outcomes=counts,
        success_rate=correct / len(labelled) if labelled else math.nan,
        success_ci=wilson_interval(correct, len(labelled)),
        distinct=distinct_share(completions) or math.nan,
        empty=float(np.mean([c.strip() == "" for c in completions])) if completions else math.nan,
    )

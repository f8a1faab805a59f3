"""Statistics of the quality benchmark: confidence intervals, learning-curve bands, and the marks
of a row that did not learn (collapsed completions, a CI that overlaps a reference row's).

The constants every part of the benchmark shares live here too (the reference rows, the collapse
threshold; the evaluation seed is :data:`agents.cli.EVAL_SEED`), :func:`machine_info`, the
description of the machine that every benchmark's output records, and :func:`token_budget`, the
prompt and completion widths of a TextGen observation space.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import COLLAPSED, verdict

BOOTSTRAP = 2000
REFERENCES = ("untrained", "random")
NOT_LEARNED = "✗"  # the leaderboard's mark of a row that did not learn
CPU_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # decide bf16 and wide-vector speed


def cpu_flags_text(machine: dict[str, Any]) -> str:
    """The :data:`CPU_FLAGS` a :func:`machine_info` found present, space-separated (``"none of
    avx512f, ..."`` when none is): what every published figure names."""
    present = [flag for flag, found in machine["flags"].items() if found]
    return " ".join(present) if present else "none of " + ", ".join(machine["flags"])


def machine_info() -> dict[str, Any]:
    """The machine a figure was measured on: CPU model, its :data:`CPU_FLAGS` (flag -> present),
    ``native_bf16`` (bf16 autocast is fast on this CPU: :func:`agents.precision.bf16_supported`),
    cores, torch threads, GPU name (None without CUDA), OS, Python and torch versions."""
    import torch

    from agents.precision import bf16_supported, cpu_flags

    cpu = platform.processor() or platform.machine() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux
        pass
    flags = cpu_flags()
    return {
        "cpu": cpu,
        "flags": {f: f in flags for f in CPU_FLAGS},
        "native_bf16": bf16_supported("cpu"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _seed_then_episode_means(
    groups: list[np.ndarray], rng: np.random.Generator, n_boot: int, episodes: np.ndarray | None
) -> np.ndarray:
    """``n_boot`` bootstrap means over ``groups`` (one array of episode rewards per seed):
    resample the seeds, then the episodes within each. ``episodes`` (``(n_boot, n)`` indices,
    drawn by the caller) resamples every seed's episodes at the same positions; None draws them
    per seed."""
    per_seed = np.stack(
        [
            g[rng.integers(0, len(g), (n_boot, len(g))) if episodes is None else episodes].mean(1)
            for g in groups
        ]
    )  # (S, B)
    s = len(groups)
    pick = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
    return per_seed[pick, np.arange(n_boot)[:, None]].mean(1)


def bootstrap_ci(
    groups: list[list[float]], n_boot: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and a percentile bootstrap CI of the mean over ``groups`` (one list of episode
    rewards per seed): resample the seeds, then the episodes within each (two levels; one seed is
    a plain episode bootstrap). Seeded, so the same results give the same interval."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan, math.nan
    boot = _seed_then_episode_means(groups, np.random.default_rng(seed), n_boot, None)
    mean = float(np.mean([g.mean() for g in groups]))
    alpha = (1 - level) / 2
    return mean, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def bootstrap_difference_ci(
    groups_a: list[list[float]],
    groups_b: list[list[float]],
    n_boot: int = BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean difference (row a - row b) and its percentile bootstrap CI, for two rows of episode
    rewards per seed: each row's seeds are resampled on their own (its training runs), and the
    test episodes at the same positions together (episode k is the same test prompt in every
    cell, the evaluation being seeded) when every seed has the same number of episodes, so that
    the prompts' difficulty cancels. A CI above 0 is a clear win of row a: a paired test, more
    sensitive than asking two rows' own CIs not to overlap."""
    a = [np.asarray(g, dtype=np.float64) for g in groups_a if len(g)]
    b = [np.asarray(g, dtype=np.float64) for g in groups_b if len(g)]
    if not a or not b:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    n = len(a[0])
    paired = all(len(g) == n for g in a + b)
    episodes = rng.integers(0, n, (n_boot, n)) if paired else None
    boot = _seed_then_episode_means(a, rng, n_boot, episodes) - _seed_then_episode_means(
        b, rng, n_boot, episodes
    )
    diff = float(np.mean([g.mean() for g in a]) - np.mean([g.mean() for g in b]))
    alpha = (1 - level) / 2
    return diff, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def curve_band(
    curves: list[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and a 95% bootstrap band (over seeds) per point; curves are cut to the
    shortest one. With one seed the band is empty (low = high = mean)."""
    n = min(len(c) for c in curves)
    y = np.stack([c[:n] for c in curves])  # (S, n)
    mean = y.mean(0)
    if len(curves) == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(curves), size=(n_boot, len(curves)))
    boot = y[pick].mean(1)  # (B, n)
    return mean, np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(np.asarray(y, dtype=np.float64), 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def finite(x: float) -> float | None:
    """``x`` as a float, or None when it is missing, NaN or infinite (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def not_learned(row: dict[str, Any], refs: list[dict[str, Any]]) -> str | None:
    """Why an agent row did not learn, or None: :func:`agents.evaluation.verdict` of the row
    against the untrained and random rows (collapsed, ``= untrained``, ``< random``, ...)."""
    v = verdict(row, {ref["agent"]: ref for ref in refs if ref["agent"] in REFERENCES})
    return None if v == "learned" else v


def summarize(agent: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One leaderboard row from an agent's cells of a task (one per seed): the mean test reward
    with its bootstrap CI, the other figures averaged over seeds, and how many seeds collapsed."""
    mean, lo, hi = bootstrap_ci([c["scores"] for c in cells])

    def avg(key: str) -> float | None:
        vals = [c["eval"].get(key) for c in cells]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else None

    tps = [c["tokens_per_s"] for c in cells if c.get("tokens_per_s")]
    return {
        "agent": agent,
        "seeds": [c["seed"] for c in cells],
        "reward_mean": mean,
        "reward_ci_low": lo,
        "reward_ci_high": hi,
        "kl": avg("kl"),
        "perplexity": avg("perplexity"),
        "distinct_2": avg("distinct_2"),
        "mean_length": avg("mean_length"),
        "distinct": avg("distinct"),
        "entropy": avg("entropy"),
        "collapsed_seeds": sum(
            1
            for c in cells
            if c["eval"].get("distinct") is not None and c["eval"]["distinct"] < COLLAPSED
        ),
        "wall_seconds": float(np.mean([c["wall_seconds"] for c in cells])),
        "train_seconds": float(np.mean([c["train_seconds"] for c in cells])),
        "tokens_per_s": float(np.mean(tps)) if tps else None,
        "episodes": int(np.mean([c["episodes"] for c in cells])),
        "tokens": int(np.mean([c["tokens"] for c in cells])),
    }


def token_budget(space: Any) -> tuple[int, int]:
    """``(P, max_new_tokens)`` of a TextGen observation space (see TextGenEnv's "Observation
    Space"): prompt ids fill columns ``[0, P)``, the completion's the next ``max_new_tokens``."""
    max_new = int(np.asarray(space["num_generated"].high).reshape(-1)[0])
    return space["input_ids"].shape[0] - max_new, max_new

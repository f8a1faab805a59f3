"""Soak test: thousands of episodes through the vector env and a learner; is memory flat?

    python -m benchmarks.soak --episodes 5120 --num-envs 64 --json soak.json

Trains PPO with a tiny LM on ``TextGen-Copy-v0`` (character tokenizer) and samples the process's
resident memory (``VmRSS`` from ``/proc/self/status``; psutil if /proc is missing) after every
iteration. The first ``--warmup`` iterations are excluded from the slope (allocator pools, the
optimizer's state and lazily built caches fill up there). Reports start/end/max RSS and the
least-squares slope in MiB per 1,000 episodes; "flat" = the post-warm-up growth is below
``--tolerance-mib``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil  # fallback off Linux

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def run(
    episodes: int = 5120,
    num_envs: int = 64,
    warmup: int = 10,
    threads: int = 1,
    tolerance_mib: float = 8.0,
    seed: int = 0,
) -> dict:
    import gymnasium as gym
    import torch

    import textgym  # noqa: F401
    from agents import PPO, LMPolicy, PPOConfig
    from textgym.models import tiny_lm

    torch.set_num_threads(threads)
    envs = gym.make_vec("TextGen-Copy-v0", num_envs=num_envs)
    vocab = int(envs.single_action_space.n)
    policy = LMPolicy(tiny_lm(vocab_size=vocab, n_layer=2, n_embd=64, seed=seed), precision="fp32")
    config = PPOConfig(seed=seed, lr=1e-3, minibatch_size=32, progress=False)
    agent = PPO(policy, envs, config)
    samples: list[tuple[int, float]] = [(0, rss_mib())]
    t0 = time.perf_counter()
    iterations = -(-episodes // num_envs)
    for _ in range(iterations):
        agent.train_iteration()
        agent.history.clear()  # learn() keeps one row per iteration; that is by design, not a leak
        gc.collect()
        samples.append((agent.episodes, rss_mib()))
    seconds = time.perf_counter() - t0
    eps = np.array([s[0] for s in samples], dtype=float)
    mem = np.array([s[1] for s in samples])
    steady_eps, steady_mem = eps[warmup + 1 :], mem[warmup + 1 :]
    slope = float(np.polyfit(steady_eps / 1000, steady_mem, 1)[0]) if len(steady_eps) > 2 else 0.0
    growth = float(steady_mem[-1] - steady_mem[0]) if len(steady_mem) else 0.0
    result = {
        "env": "TextGen-Copy-v0",
        "learner": "PPO (tiny LM, 2 layers x 64)",
        "num_envs": num_envs,
        "episodes": int(agent.episodes),
        "iterations": iterations,
        "seconds": round(seconds, 1),
        "rss_start_mib": round(float(mem[0]), 1),
        "rss_after_warmup_mib": round(float(steady_mem[0]), 1) if len(steady_mem) else None,
        "rss_end_mib": round(float(mem[-1]), 1),
        "rss_max_mib": round(float(mem.max()), 1),
        "growth_after_warmup_mib": round(growth, 2),
        "slope_mib_per_1k_episodes": round(slope, 3),
        "flat": abs(growth) < tolerance_mib,
        "samples": [
            (int(e), round(float(m), 1)) for e, m in samples[:: max(1, len(samples) // 20)]
        ],
    }
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--episodes", type=int, default=5120)
    p.add_argument("--num-envs", type=int, default=64)
    p.add_argument("--warmup", type=int, default=10, help="iterations left out of the slope")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tolerance-mib", type=float, default=8.0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    result = run(args.episodes, args.num_envs, args.warmup, args.threads, args.tolerance_mib)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    print("samples (episodes, RSS MiB):", result["samples"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

"""NLPO-style masking vs plain PPO on TextGen-v0 with SmolLM2-135M, same seed and time budget.

    python -m benchmarks.nlpo_vs_ppo --minutes 2 --num-envs 8 --json nlpo_vs_ppo.json

Each learner trains for ``--minutes`` (wall clock), then both are evaluated on the test split
with the same seeds. On a 2-core CPU a few minutes is a handful of iterations: the figures there
are a smoke test (cost per iteration, no divergence), not a quality ranking; use a GPU and
``--minutes 30`` or more for that.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run(minutes: float = 2.0, num_envs: int = 8, eval_episodes: int = 16, seed: int = 0,
        model: str = "smollm2-135m", max_new_tokens: int = 16) -> list[dict]:  # fmt: skip
    import gymnasium as gym

    import textgym  # noqa: F401
    from agents import NLPO, PPO, LMPolicy, NLPOConfig, PPOConfig, evaluate

    rows = []
    for name, cls, config in [
        ("PPO", PPO, PPOConfig(seed=seed, progress=False)),
        ("NLPO (top-p 0.9, K=5)", NLPO, NLPOConfig(seed=seed, progress=False)),
    ]:
        kwargs = dict(num_envs=num_envs, max_new_tokens=max_new_tokens)
        envs, eval_envs = gym.make_vec("TextGen-v0", **kwargs), gym.make_vec("TextGen-v0", **kwargs)
        agent = cls(LMPolicy.from_pretrained(model), envs, config)
        t0 = time.perf_counter()
        agent.learn(iterations=10_000, time_limit=minutes * 60)
        seconds = time.perf_counter() - t0
        result = evaluate(agent, eval_envs, eval_episodes, split="test", seed=1234)
        rows.append({
            "learner": name, "iterations": agent.iteration, "episodes": agent.episodes,
            "train_seconds": round(seconds, 1),
            "s_per_iteration": round(seconds / max(agent.iteration, 1), 1),
            "train_reward_last": round(agent.history[-1]["reward"], 4) if agent.history else None,
            "eval_reward": round(result.reward_mean, 4),
            "eval_ci": [round(x, 4) for x in result.reward_ci],
            "eval_kl": round(result.kl, 3), "eval_perplexity": round(result.perplexity, 2),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=2.0, help="training time per learner")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = run(args.minutes, args.num_envs, args.eval_episodes,
               max_new_tokens=args.max_new_tokens)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()

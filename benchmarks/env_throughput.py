"""Token-steps per second of TextGenVectorEnv, and its cost next to the LM it feeds.

For each batch size N the benchmark measures, in one process:

* env: token-steps/s of ``TextGenVectorEnv`` on TextGen-v0's prompts and tokenizer with random
  (pre-drawn) actions and a scorer that returns zeros, so the figure is the environment alone;
* scorer: the default VADER scorer's time per finished episode, reported separately;
* LM: the time of one SmolLM2-135M forward pass per token at the same N (batched decoding with
  a KV cache after a prompt prefill), and the environment's time per step as a fraction of it.

    python -m benchmarks.env_throughput                 # N = 1, 16, 256
    python -m benchmarks.env_throughput --sizes 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from textgym import TextGenVectorEnv
from textgym.models import load_lm
from textgym.rewards import VaderSentiment


def zero_scorer(prompts, completions, references):
    return np.zeros(len(completions), dtype=np.float32)


def env_steps_per_second(num_envs: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """(token-steps/s, seconds per vector step) with random actions and a free scorer."""
    envs = TextGenVectorEnv(num_envs=num_envs, scorer=zero_scorer)
    rng = np.random.default_rng(seed)
    actions = rng.integers(envs.single_action_space.n, size=(steps, num_envs))
    envs.reset(seed=seed)
    for a in actions[:64]:  # warm up: encode the prompt bank, fill caches
        envs.step(a)
    start = time.perf_counter()
    for a in actions:
        envs.step(a)
    elapsed = time.perf_counter() - start
    return steps * num_envs / elapsed, elapsed / steps


def scorer_seconds_per_episode(n: int = 2000) -> float:
    """VADER's time per completion, on 32-token-like texts."""
    scorer = VaderSentiment()
    texts = ["the staff were friendly and the room was clean but the breakfast was cold"] * n
    start = time.perf_counter()
    scorer([""] * n, texts, [None] * n)
    return (time.perf_counter() - start) / n


@torch.no_grad()
def lm_seconds_per_token_step(model, num_envs: int, prompt_len: int = 64, steps: int = 4) -> float:
    """One decoding forward pass (KV cache, ``num_envs`` rows) of the model, in seconds."""
    ids = torch.randint(100, 40_000, (num_envs, prompt_len))
    out = model(input_ids=ids, use_cache=True)
    cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=token, cache=cache, use_cache=True)
        cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--steps", type=int, default=2000, help="timed vector steps per size")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    model, _ = load_lm("smollm2-135m")
    model.eval()
    vader = scorer_seconds_per_episode()
    rows = []
    for n in args.sizes:
        rate, env_step = env_steps_per_second(n, args.steps)
        lm_step = lm_seconds_per_token_step(model, n)
        rows.append(
            {
                "num_envs": n,
                "env_token_steps_per_s": rate,
                "env_seconds_per_step": env_step,
                "lm_seconds_per_step": lm_step,
                "env_fraction_of_lm": env_step / lm_step,
                "vader_seconds_per_episode": vader,
            }
        )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        "| N | env token-steps/s | env us/step | LM forward ms/step | env / LM | VADER us/episode |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['num_envs']} | {r['env_token_steps_per_s']:,.0f} "
            f"| {r['env_seconds_per_step'] * 1e6:.1f} | {r['lm_seconds_per_step'] * 1e3:.1f} "
            f"| {r['env_fraction_of_lm']:.3%} | {r['vader_seconds_per_episode'] * 1e6:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

"""The GPU paths of LMPolicy against its plain eager path, in one process, on the same work.

Variants (LMPolicy's ``kv_cache`` and ``compile``): ``dynamic`` + eager (the baseline, what a
CPU gets), ``static`` + eager, and ``static`` + compiled (what ``"auto"`` picks on CUDA). Each
is measured on

* a rollout: N TextGen-v0 episodes of exactly T tokens (EOS off), the same prompts and sampling
  seed for every variant; tokens/s;
* an update step: ``policy.token_stats`` (log-probs, entropies, values of the rollout's tokens)
  forward + backward, as PPO's minibatches run it; milliseconds.

The first call of a compiled variant compiles (reported apart, as ``compile_s``); the figures are
medians of the repeats after it. Ratios are against the baseline.

    python -m benchmarks.gpu_paths                                   # SmolLM2, N=16, T=32
    python -m benchmarks.gpu_paths --backend eager --model tiny      # a quick CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch

import textgym  # noqa: F401
from agents import LMPolicy, collect_rollout


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(policy: LMPolicy, envs, n: int, horizon: int, repeats: int) -> dict:
    """Rollout tokens/s and update milliseconds of ``policy``; the first run (warm-up or
    compilation) is timed apart."""
    device = policy.device

    def rollout(seed: int):
        _sync(device)
        t0 = time.perf_counter()
        ro = collect_rollout(
            policy,
            envs,
            seeds=list(range(n)),
            generator=torch.Generator(device=device).manual_seed(seed),
        )
        _sync(device)
        assert ro.num_tokens == n * horizon
        return ro, time.perf_counter() - t0

    def update(ro) -> float:
        _sync(device)
        t0 = time.perf_counter()
        policy.zero_grad(set_to_none=True)
        stats = policy.token_stats(ro.input_ids, ro.attention_mask, ro.prompt_len, mask=ro.mask)
        (stats.logprobs.sum() + stats.entropies.sum() + stats.values.sum()).backward()
        _sync(device)
        return time.perf_counter() - t0

    first_ro, first_rollout_s = rollout(0)
    first_update_s = update(first_ro)
    rollout_s, update_s = [], []
    for seed in range(1, repeats + 1):
        ro, seconds = rollout(seed)
        rollout_s.append(seconds)
        update_s.append(update(ro))
    return {
        "rollout_tokens_per_s": n * horizon / statistics.median(rollout_s),
        "update_ms": 1000 * statistics.median(update_s),
        "first_rollout_s": first_rollout_s,
        "first_update_s": first_update_s,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="a load_lm name, or 'tiny'")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, horizon = args.num_envs, args.max_new_tokens
    envs = gym.make_vec("TextGen-v0", num_envs=n, max_new_tokens=horizon, stop_on_eos=False)

    def make(kv_cache: str, compile: bool | str) -> LMPolicy:
        if args.model == "tiny":
            from textgym.models import tiny_lm

            model = tiny_lm(vocab_size=int(envs.single_action_space.n), n_layer=2, n_embd=64)
            return LMPolicy(model, precision=args.precision, kv_cache=kv_cache, compile=compile)
        return LMPolicy.from_pretrained(
            args.model, precision=args.precision, kv_cache=kv_cache, compile=compile
        )

    rows = []
    for kv_cache, compile in [("dynamic", False), ("static", False), ("static", args.backend)]:
        policy = make(kv_cache, compile)
        row = {"kv_cache": kv_cache, "compile": compile or "off", "device": str(policy.device)}
        row.update(measure(policy, envs, n, horizon, args.repeats))
        if rows:
            base = rows[0]
            row["rollout_speedup"] = row["rollout_tokens_per_s"] / base["rollout_tokens_per_s"]
            row["update_speedup"] = base["update_ms"] / row["update_ms"]
        rows.append(row)
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()

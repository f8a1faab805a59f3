"""Episodes through TextGenVectorEnv with LMPolicy vs a plain ``model.generate``, same work.

Both sides, in one process: SmolLM2-135M-Instruct, the same N left-padded TextGen-v0 prompts,
exactly T new tokens per row (EOS stopping off on both sides: ``stop_on_eos=False`` in the env,
``min_new_tokens=T`` in generate), pure sampling (temperature 1, top-k 0, top-p 1), the same
precision (LMPolicy's ``auto``: bf16 autocast where bf16 is native, here on both sides) and
threads. The env side is the whole episode: reset, prefill, T ``act`` + ``env.step`` calls,
scoring the completions with VADER. Repeats alternate the two sides; the ratio of the medians
is the figure (the ratio of the fastest runs is printed too: on a shared machine it is the less
noisy one).

    python -m benchmarks.rollout_vs_generate                 # N=16, T=32, 7 repeats
    python -m benchmarks.rollout_vs_generate --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import gymnasium as gym
import torch

import textgym  # noqa: F401
from agents import LMPolicy, collect_rollout


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, horizon = args.num_envs, args.max_new_tokens

    policy = LMPolicy.from_pretrained(args.model, precision=args.precision)
    model = policy.model
    envs = gym.make_vec("TextGen-v0", num_envs=n, max_new_tokens=horizon, stop_on_eos=False)
    obs, _ = envs.reset(seed=0)
    # The same prompt columns LMPolicy prefills: without the padding common to all rows.
    first = int(obs["attention_mask"].any(0).argmax())
    device = policy.device
    prompt_ids = torch.from_numpy(obs["input_ids"][:, first:-horizon].copy()).to(device)
    prompt_mask = torch.from_numpy(obs["attention_mask"][:, first:-horizon].copy()).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    autocast = policy.autocast if policy.amp_dtype is not None else contextlib.nullcontext

    def run_env(seed: int) -> float:
        t0 = time.perf_counter()
        # seeds 0..n-1: the prompts of envs.reset(seed=0), which generate gets
        ro = collect_rollout(
            policy, envs, seeds=list(range(n)), generator=torch.Generator(device).manual_seed(seed)
        )
        assert ro.num_tokens == n * horizon
        sync()
        return time.perf_counter() - t0

    @torch.no_grad()
    def run_generate(seed: int) -> float:
        torch.manual_seed(seed)
        sync()
        t0 = time.perf_counter()
        with autocast():
            out = model.generate(
                input_ids=prompt_ids,
                attention_mask=prompt_mask,
                do_sample=True,
                max_new_tokens=horizon,
                min_new_tokens=horizon,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                pad_token_id=policy.tokenizer.pad_token_id,
            )
        assert out.shape == (n, prompt_ids.shape[1] + horizon)
        sync()
        return time.perf_counter() - t0

    run_env(100), run_generate(100)  # warm-up
    env_s, gen_s = [], []
    for r in range(args.repeats):
        env_s.append(run_env(r))
        gen_s.append(run_generate(r))
    tokens = n * horizon
    env_tps, gen_tps = tokens / statistics.median(env_s), tokens / statistics.median(gen_s)
    result = {
        "model": args.model,
        "num_envs": n,
        "max_new_tokens": horizon,
        "precision": str(policy.amp_dtype or torch.float32),
        "threads": torch.get_num_threads(),
        "env_seconds": env_s,
        "generate_seconds": gen_s,
        "env_tokens_per_s": env_tps,
        "generate_tokens_per_s": gen_tps,
        "ratio": env_tps / gen_tps,
        "ratio_of_best": min(gen_s) / min(env_s),
    }
    print(
        f"{args.model}, N={n}, T={horizon}, {result['precision']}, "
        f"{result['threads']} threads, median of {args.repeats}\n"
    )
    print("| path | tokens/s | s per batch |")
    print("|---|---|---|")
    print(f"| TextGenVectorEnv + LMPolicy | {env_tps:,.0f} | {statistics.median(env_s):.2f} |")
    print(f"| model.generate | {gen_tps:,.0f} | {statistics.median(gen_s):.2f} |")
    print(
        f"\nratio (env / generate): {result['ratio']:.3f} of medians, "
        f"{result['ratio_of_best']:.3f} of the fastest runs"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

"""Seconds of one ``agents.evaluate`` with and without its reference figures, in one run.

    python -m benchmarks.eval_time                                   # SmolLM2-135M, RG-chain_sum-v0
    python -m benchmarks.eval_time --env TextGen-Copy-v0 --model tiny

``evaluate(..., with_reference=True)`` (the default) plays the episodes, then runs two full
forward passes per batch, the policy's and the reference model's, for the KL and the perplexity;
``with_reference=False`` plays the same episodes and skips both (``benchmarks.verifiable
--no-eval-kl``, the ``rg`` recipe's setting). The two sides alternate, ``--repeats`` times each,
on the same episodes (same seed); the table gives each side's median seconds and their ratio.
The default env is the ``rg`` recipe's (32 new tokens, prompts cut to their last 64 tokens) on
chain_sum's level 0, with the untrained model (which writes longer completions than a warm-started
one, so the forward passes weigh a little more than in a recipe run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from agents import evaluate
from agents.cli import build_policy, make_envs
from benchmarks.stats import cpu_flags_text, machine_info
from benchmarks.verifiable import recipe_env_kwargs

LEVEL_0 = {"task_kwargs": {"difficulty": 0}}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="RG-chain_sum-v0")
    p.add_argument(
        "--env-kwargs",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="env arguments (default: an RG-* id's rg recipe ones at curriculum level 0)",
    )
    p.add_argument("--model", default="smollm2-135m", help='"smollm2-135m", an HF id, or "tiny"')
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--episodes", type=int, default=64, help="episodes per evaluation")
    p.add_argument("--repeats", type=int, default=3, help="evaluations per side")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.episodes < 1 or args.repeats < 1:
        raise SystemExit("--episodes and --repeats must be at least 1")

    if args.env_kwargs is None:
        rg = args.env.startswith("RG-")
        args.env_kwargs = recipe_env_kwargs("rg", args.env, LEVEL_0) if rg else {}
    envs = make_envs(args.env, args.num_envs, args.env_kwargs)
    policy = build_policy(args.model, envs, precision=args.precision)
    policy.ensure_reference()  # built once, before the clock: both sides then find it ready
    evaluate(policy, envs, n_episodes=min(args.episodes, args.num_envs), seed=0)  # warm-up

    seconds: dict[str, list[float]] = {"with_reference": [], "without": []}
    rewards: dict[str, float] = {}
    for _ in range(args.repeats):  # alternating, so drift in the machine's load hits both sides
        for side in seconds:
            start = time.perf_counter()
            result = evaluate(
                policy,
                envs,
                n_episodes=args.episodes,
                seed=1,
                with_reference=side == "with_reference",
            )
            seconds[side].append(time.perf_counter() - start)
            rewards[side] = result.reward_mean
    if rewards["with_reference"] != rewards["without"]:  # the same episodes, or no comparison
        raise SystemExit(f"the two sides played different episodes: mean rewards {rewards}")
    median = {side: statistics.median(times) for side, times in seconds.items()}
    ratio = median["without"] / median["with_reference"]

    machine = machine_info()
    print(f"{args.env}, {args.model}, {args.episodes} episodes x {args.repeats} per side")
    print(
        f"CPU: {machine['cpu']}, flags {cpu_flags_text(machine)}, {machine['cores']} cores, "
        f"{torch.get_num_threads()} torch threads, {args.precision}"
    )
    print("| evaluate(...) | median s | runs (s) |")
    print("|---|---|---|")
    for side, times in seconds.items():
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"| with_reference={side == 'with_reference'} | {median[side]:.2f} | {runs} |")
    print(f"without / with: {ratio:.2f}")
    out = {
        "args": vars(args),
        "machine": machine,
        "seconds": seconds,
        "median": median,
        "ratio_without_to_with": ratio,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()

"""Train a learner on a textgym env from the command line, with an evaluation before and after.

    python -m agents.train --learner ppo --episodes 2000 --minutes 20 --json run.json

Prints the before/after evaluation (reward with 95% CI, KL, perplexity, distinct-1/2, samples)
and writes them to ``--json``. Logs go to ``--log-dir`` (CSV + TensorBoard), checkpoints to
``--checkpoint-dir`` (``--resume`` continues from there). Under ``torchrun`` /
``accelerate launch`` every rank trains and evaluates its share; rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the envs)
from agents import LEARNERS, LMPolicy, distributed, evaluate


def parse_assignments(items: list[str]) -> dict:
    """``KEY=VALUE`` pairs; values are JSON (numbers, true/false, null) or plain strings."""
    out = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--learner", choices=sorted(LEARNERS), default="ppo")
    p.add_argument("--env", default="TextGen-v0")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--episodes", type=int, default=2000, help="training episodes in all")
    p.add_argument("--minutes", type=float, default=None, help="training time budget")
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument(
        "--compile",
        default="auto",
        help="torch.compile backend, 'off', or 'auto' (inductor on CUDA)",
    )
    p.add_argument("--kv-cache", default="auto", choices=["auto", "dynamic", "static"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--kl-coef", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="other config fields, e.g. --set update_epochs=4 minibatch_size=8",
    )
    p.add_argument(
        "--env-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="env arguments, e.g. --env-set max_new_tokens=16",
    )
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cls = LEARNERS[args.learner]
    overrides = {k: v for k, v in (("lr", args.lr), ("kl_coef", args.kl_coef)) if v is not None}
    overrides.update(parse_assignments(args.set))
    env_kwargs = parse_assignments(args.env_set)
    config = cls.Config(
        seed=args.seed, log_dir=args.log_dir, checkpoint_dir=args.checkpoint_dir, **overrides
    )
    envs = gym.make_vec(args.env, num_envs=args.num_envs, **env_kwargs)
    eval_envs = gym.make_vec(args.env, num_envs=args.num_envs, **env_kwargs)
    policy = LMPolicy.from_pretrained(
        args.model,
        precision=args.precision,
        device=distributed.default_device(),
        compile=args.compile,
        kv_cache=args.kv_cache,
    )
    agent = cls(policy, envs, config)
    if args.resume:
        agent.resume()
    main_rank = agent.dist.is_main

    t0 = time.perf_counter()
    before = evaluate(agent, eval_envs, args.eval_episodes, split="test", seed=1234, gather=True)
    if main_rank:
        print(f"before: {before}", flush=True)
    t1 = time.perf_counter()
    time_limit = args.minutes * 60 if args.minutes else None
    agent.learn(total_episodes=args.episodes, time_limit=time_limit)
    t2 = time.perf_counter()
    after = evaluate(agent, eval_envs, args.eval_episodes, split="test", seed=1234, gather=True)
    distributed.cleanup()
    if main_rank:
        print(f"after:  {after}\n\n{after.table()}", flush=True)
    result = {
        "learner": cls.__name__,
        "config": {k: v for k, v in vars(config).items()},
        "episodes": agent.episodes,
        "iterations": agent.iteration,
        "train_seconds": t2 - t1,
        "eval_seconds": (t1 - t0) + (time.perf_counter() - t2),
        "stop_reason": agent.stop_reason,
        "before": {**before.as_dict(), "samples": before.samples},
        "after": {**after.as_dict(), "samples": after.samples},
        "last_iterations": agent.history[-3:],
    }
    if args.json and main_rank:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()

"""Learning on language tasks with verifiable rewards: before/after figures you can repeat.

    python -m benchmarks.verifiable --env TextGen-Arithmetic-v0 --minutes 20 --threads 1 \\
        --warm-start-epochs 1 --out arithmetic.json

One run: build the env (``gym.make_vec``), evaluate the untrained policy on the test split
(mean reward, 95% CI, share of distinct completions, samples), optionally warm-start it on the
train split's references (:func:`agents.warm_start`; the KL reference then becomes the
warmed-up model) and evaluate again, then train a learner (GRPO by default) for ``--minutes``
of wall time and evaluate a last time on the same test episodes (same seed). Every evaluation
runs ``--eval-episodes`` sampled episodes (temperature 1, the policy RL trains) and the same
number greedily. ``--drop-flat-groups`` (on by default for group learners) leaves out of each
update the groups whose completions all scored the same: their advantages are 0, they would
only dilute the token mean and cost a forward/backward.

``--model tiny`` trains :meth:`agents.LMPolicy.tiny` from scratch (for char-tokenizer tasks such
as TextGen-Copy-v0; a fast smoke run), anything else goes to :meth:`LMPolicy.from_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from typing import Any

import gymnasium as gym
import torch

import textgym  # noqa: F401  (registers the envs)
from agents import LEARNERS, LMPolicy, WarmStartConfig, evaluate, warm_start
from agents.rollout import Rollout
from agents.train import parse_assignments


def cpu_description() -> dict[str, Any]:
    """CPU model, the bf16 matrix flags it has, and the torch thread count."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1).strip() if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else set()
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "model": model,
        "flags": [f for f in wanted if f in flags],
        "torch_threads": torch.get_num_threads(),
    }


def drop_flat_groups(rollout: Rollout, group_size: int) -> tuple[Rollout | None, int]:
    """``rollout`` without the groups (``group_size`` consecutive slots) whose scores are all
    equal, and how many groups were dropped; None when every group was flat."""
    groups = rollout.scores.view(-1, group_size)
    keep_groups = (groups.max(-1).values - groups.min(-1).values) > 1e-9
    dropped = int((~keep_groups).sum())
    if dropped == 0:
        return rollout, 0
    if not bool(keep_groups.any()):
        return None, dropped
    keep = keep_groups.repeat_interleave(group_size)
    rows = keep.nonzero().squeeze(-1).tolist()
    fields = {}
    for name, value in vars(rollout).items():
        if isinstance(value, torch.Tensor):
            fields[name] = value[keep.to(value.device)]
        elif isinstance(value, list):
            fields[name] = [value[i] for i in rows]
        else:
            fields[name] = value
    return Rollout(**fields), dropped


def with_flat_group_dropping(cls: type) -> type:
    """A subclass of a group learner (GRPO, RLOO) whose updates skip flat groups."""

    class Dropping(cls):
        def update(self, rollout: Rollout) -> dict[str, float]:
            kept, dropped = drop_flat_groups(rollout, self.group_size)
            total = rollout.num_envs // self.group_size
            if kept is None:
                return {"dropped_groups": float(dropped), "kept_groups": 0.0}
            row = super().update(kept)
            row.update(dropped_groups=float(dropped), kept_groups=float(total - dropped))
            return row

    Dropping.__name__ = Dropping.__qualname__ = f"{cls.__name__}DropFlat"
    return Dropping


def measure(
    policy_or_agent: Any, envs: Any, episodes: int, seed: int, samples: int, label: str
) -> dict[str, Any]:
    """Sampled and greedy evaluations on the test split; prints the figures and samples."""
    out: dict[str, Any] = {}
    for mode, greedy in (("sampled", False), ("greedy", True)):
        t0 = time.perf_counter()
        res = evaluate(
            policy_or_agent,
            envs,
            episodes,
            split="test",
            seed=seed,
            deterministic=greedy,
            num_samples=episodes,
        )
        completions = [s["completion"] for s in res.samples]
        distinct = len(set(completions)) / max(len(completions), 1)
        out[mode] = {
            **res.as_dict(),
            "distinct_completions": distinct,
            "seconds": time.perf_counter() - t0,
            "samples": res.samples[:samples],
        }
        lo, hi = res.reward_ci
        print(
            f"[{label}] {mode:7s} reward {res.reward_mean:.3f} (95% CI {lo:.3f}..{hi:.3f}, "
            f"n={res.n_episodes}), distinct completions {distinct:.2f}, KL {res.kl:.2f}, "
            f"length {res.mean_length:.1f}",
            flush=True,
        )
        if mode == "sampled":
            for s in res.samples[:samples]:
                print(f"    {s['prompt'][-60:]!r} -> {s['completion']!r} ({s['score']:.2f})")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="TextGen-Arithmetic-v0")
    p.add_argument("--learner", choices=sorted(LEARNERS), default="grpo")
    p.add_argument("--model", default="smollm2-135m", help="a load_lm name, or 'tiny'")
    p.add_argument("--minutes", type=float, default=20.0, help="RL wall-time budget")
    p.add_argument("--episodes", type=int, default=1_000_000, help="RL episode cap")
    p.add_argument("--warm-start-epochs", type=int, default=0)
    p.add_argument("--warm-start-lr", type=float, default=1e-4)
    p.add_argument(
        "--warm-start-examples",
        type=int,
        default=None,
        help="use at most this many train references",
    )
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--kl-coef", type=float, default=None)
    p.add_argument("--drop-flat-groups", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--eval-episodes", type=int, default=100)
    p.add_argument("--eval-seed", type=int, default=1234)
    p.add_argument("--samples", type=int, default=4, help="samples printed per evaluation")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="other learner config fields"
    )
    p.add_argument(
        "--env-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="env arguments, e.g. reward_mode=dense",
    )
    p.add_argument("--out", default=None, help="write the results (JSON) here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    cpu = cpu_description()
    print(
        f"CPU: {cpu['model']}, flags {' '.join(cpu['flags']) or '-'}, "
        f"{cpu['torch_threads']} torch threads; precision {args.precision}",
        flush=True,
    )

    env_kwargs = parse_assignments(args.env_set)
    envs = gym.make_vec(args.env, num_envs=args.num_envs, **env_kwargs)
    eval_envs = gym.make_vec(args.env, num_envs=args.num_envs, **env_kwargs)
    if args.model == "tiny":
        policy = LMPolicy.tiny(envs, seed=args.seed, precision=args.precision)
    else:
        policy = LMPolicy.from_pretrained(args.model, precision=args.precision)

    result: dict[str, Any] = {"args": vars(args), "cpu": cpu}
    result["before"] = measure(
        policy, eval_envs, args.eval_episodes, args.eval_seed, args.samples, "untrained"
    )

    t0 = time.perf_counter()
    if args.warm_start_epochs:
        ws = warm_start(
            policy,
            envs,
            WarmStartConfig(
                epochs=args.warm_start_epochs,
                lr=args.warm_start_lr,
                seed=args.seed,
                max_examples=args.warm_start_examples,
            ),
        )
        result["warm_start"] = {
            "history": ws.history,
            "examples": ws.num_examples,
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"warm start: {ws.num_examples} references x {args.warm_start_epochs} epochs, "
            f"{time.perf_counter() - t0:.0f} s, last NLL {ws.history[-1]['loss']:.3f}"
        )
        result["after_warm_start"] = measure(
            policy, eval_envs, args.eval_episodes, args.eval_seed, args.samples, "warm start"
        )

    cls = LEARNERS[args.learner]
    overrides: dict[str, Any] = {"lr": args.lr, "progress": False}
    if args.kl_coef is not None:
        overrides["kl_coef"] = args.kl_coef
    if "group_size" in {f for f in cls.Config.__dataclass_fields__}:
        overrides["group_size"] = args.group_size
        if args.drop_flat_groups:
            cls = with_flat_group_dropping(cls)
    overrides.update(parse_assignments(args.set))
    config = cls.Config.for_policy(policy, seed=args.seed, **overrides)
    agent = cls(policy, envs, config)
    t1 = time.perf_counter()
    agent.learn(total_episodes=args.episodes, time_limit=args.minutes * 60)
    train_seconds = time.perf_counter() - t1
    history = agent.history
    dropped = sum(r.get("dropped_groups", 0) for r in history)
    kept = sum(r.get("kept_groups", 0) for r in history)
    print(
        f"{cls.__name__}: {agent.episodes} episodes, {agent.iteration} updates in "
        f"{train_seconds:.0f} s ({agent.stop_reason}); flat groups dropped "
        f"{dropped:.0f} of {dropped + kept:.0f}",
        flush=True,
    )
    result["train"] = {
        "learner": cls.__name__,
        "config": {k: v for k, v in vars(config).items()},
        "episodes": agent.episodes,
        "updates": agent.iteration,
        "seconds": train_seconds,
        "stop_reason": agent.stop_reason,
        "flat_groups_dropped": dropped,
        "groups_kept": kept,
        "reward_curve": [[r.get("episodes"), r.get("reward")] for r in history],
    }
    result["after"] = measure(
        agent, eval_envs, args.eval_episodes, args.eval_seed, args.samples, "trained"
    )
    result["total_seconds"] = time.perf_counter() - started
    b, a = result["before"]["sampled"], result["after"]["sampled"]
    separated = a["reward_ci_low"] > b["reward_ci_high"]
    result["cis_separated"] = separated
    print(
        f"sampled reward {b['reward_mean']:.3f} [{b['reward_ci_low']:.3f}, "
        f"{b['reward_ci_high']:.3f}] -> {a['reward_mean']:.3f} [{a['reward_ci_low']:.3f}, "
        f"{a['reward_ci_high']:.3f}]: 95% CIs {'do not overlap' if separated else 'overlap'}; "
        f"total {result['total_seconds'] / 60:.1f} min"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()

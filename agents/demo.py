"""The textgym demo: train SmolLM2-135M with PPO on TextGen-v0 for a few minutes on a CPU, and
show what changed.

    python -m agents.demo                      # `make demo`: ~10 minutes on a 2-core CPU
    python -m agents.demo --minutes 3 --agent grpo --out runs/demo-grpo

1. evaluates the untrained model on TextGen-v0's test prompts (VADER sentiment of a 32-token
   continuation of a review opening; the task: continue it positively);
2. trains it with PPO through the env API for ``--minutes`` (a progress bar shows the training
   reward, the KL to the untrained model and tokens/s);
3. evaluates again on the same test prompts with the same sampling seed, and prints the samples
   side by side with their rewards, the mean reward before -> after and the KL;
4. saves ``<out>/reward_curve.png``, the checkpoint (``<out>/checkpoints``), the logs
   (``<out>/progress.csv``, TensorBoard) and ``<out>/run.json``, so that ``textgym eval <out>``
   and ``textgym train --out <out> --resume`` work on it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from agents import evaluate
from agents.cli import EVAL_SEED, build_policy, has_tensorboard, learner_class, make_envs, write_run
from agents.evaluation import verdict, verdict_line

# PPO on TextGen-v0 with SmolLM2-135M and 16 envs: lr 5e-5 raises the test reward by ~0.3-0.4
# within ~30 iterations (about 8 minutes on a 2-core CPU); PPOConfig's other defaults.
DEMO_CONFIG = {
    "ppo": {"lr": 5e-5},
    "grpo": {"lr": 3e-5},
    "rloo": {"lr": 3e-5},
    "reinforce": {"lr": 3e-5},
    "a2c": {"lr": 3e-5},
}


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def side_by_side(before: list[dict], after: list[dict], width: int = 100) -> str:
    """Prompt, then the before and after completions with their rewards, one block per prompt."""
    col = max(30, (width - 6) // 2)
    lines = []
    for k, (b, a) in enumerate(zip(before, after), start=1):
        lines.append(f"[{k}] {_clip(b['prompt'], width - 4)}")
        left = textwrap.wrap(" ".join(b["completion"].split()) or "(empty)", col)
        right = textwrap.wrap(" ".join(a["completion"].split()) or "(empty)", col)
        lines.append(
            f"    {'before  ' + format(b['score'], '+.3f'):<{col}}  after  {a['score']:+.3f}"
        )
        for i in range(max(len(left), len(right))):
            lhs = left[i] if i < len(left) else ""
            rhs = right[i] if i < len(right) else ""
            lines.append(f"    {lhs:<{col}}  {rhs}")
        lines.append("")
    return "\n".join(lines)


@contextlib.contextmanager
def time_bar(agent, seconds: float) -> Iterator[None]:
    """A tqdm bar over the time budget, updated after every iteration of ``agent`` (with the
    training reward, KL and tokens/s), instead of the learner's own bar over iterations."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=round(seconds),
        unit="s",
        desc=f"{type(agent).__name__} training",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}",
    )
    start = time.perf_counter()
    inner = agent.train_iteration

    def train_iteration() -> dict:
        row = inner()
        bar.n = min(round(time.perf_counter() - start), bar.total)
        bar.set_postfix_str(
            f"it {agent.iteration}, reward {row['reward']:+.3f}, "
            f"KL {row['kl']:.2f}, {row['tokens_per_s']:.0f} tok/s"
        )
        return row

    agent.train_iteration = train_iteration  # learn() calls it once per iteration
    try:
        yield
    finally:
        del agent.train_iteration
        bar.close()


def save_curve(history: list[dict], before: float, after: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.array([row["episodes"] for row in history], dtype=float)
    y = np.array([row["reward"] for row in history], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(x, y, color="tab:blue", alpha=0.35, label="training reward (per iteration)")
    if len(y) >= 3:
        w = max(2, len(y) // 8)
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], smooth, color="tab:blue", label=f"training reward ({w}-iteration mean)")
    ax.axhline(before, color="k", linestyle="--", label=f"test reward before: {before:.3f}")
    ax.axhline(after, color="tab:green", linestyle="--", label=f"test reward after: {after:.3f}")
    ax.set_xlabel("training episodes")
    ax.set_ylabel("VADER reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="TextGen-v0")
    p.add_argument("--agent", default="ppo", choices=sorted(DEMO_CONFIG))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--minutes", type=float, default=8.0, help="training time (default 8)")
    p.add_argument(
        "--episodes",
        type=int,
        default=100_000,
        help="training episode cap (the time limit usually ends training first)",
    )
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--eval-episodes", type=int, default=32)
    p.add_argument("--samples", type=int, default=6, help="before/after pairs to print")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default="runs/demo")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if (out / "checkpoints").exists():  # a fresh demo each time
        shutil.rmtree(out / "checkpoints")
    for old in [*out.glob("events.out.tfevents.*"), out / "progress.csv"]:
        old.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    print(
        f"textgym demo: {args.agent.upper()} on {args.env} with {args.model}, "
        f"{args.minutes:g} minutes of training, {torch.get_num_threads()} CPU threads",
        flush=True,
    )
    envs = make_envs(args.env, args.num_envs)
    eval_envs = make_envs(args.env, min(args.num_envs, args.eval_episodes))
    policy = build_policy(args.model, envs, seed=args.seed)
    print(
        f"loaded {args.model} and {envs.num_envs} envs in {time.perf_counter() - t_start:.1f} s",
        flush=True,
    )

    print(
        f"\n1/3 evaluating the untrained model on {args.eval_episodes} test prompts ...", flush=True
    )
    before = evaluate(
        policy,
        eval_envs,
        args.eval_episodes,
        split="test",
        seed=EVAL_SEED,
        num_samples=args.eval_episodes,
    )
    print(f"    before: {before}", flush=True)

    cls = learner_class(args.agent)
    overrides = dict(DEMO_CONFIG[args.agent])
    if args.lr is not None:
        overrides["lr"] = args.lr
    config = cls.Config(
        seed=args.seed,
        log_dir=str(out),
        checkpoint_dir=str(out / "checkpoints"),
        checkpoint_every=10,
        progress=False,
        tensorboard=has_tensorboard(),
        **overrides,
    )
    # progress=False: the demo's own bar (time_bar) counts down the time budget instead.
    agent = cls(policy, envs, config)
    run = {
        "env_id": args.env,
        "env_kwargs": {},
        "agent": args.agent,
        "model": args.model,
        "precision": "auto",
        "seed": args.seed,
        "num_envs": args.num_envs,
        "episodes": args.episodes,
        "config": overrides,
        "checkpoint_every": 10,
        "config_resolved": {
            k: v
            for k, v in dataclasses.asdict(config).items()
            if k not in ("log_dir", "checkpoint_dir")
        },
    }
    write_run(out, run)
    print(
        f"\n2/3 training {cls.__name__} for {args.minutes:g} minutes ({args.num_envs} episodes "
        f"per iteration, lr {config.lr:g}) ...",
        flush=True,
    )
    t_train = time.perf_counter()
    with time_bar(agent, args.minutes * 60):
        agent.learn(total_episodes=args.episodes, time_limit=args.minutes * 60)
    train_s = time.perf_counter() - t_train

    print(
        f"\n3/3 evaluating the trained model on the same {args.eval_episodes} test prompts ...",
        flush=True,
    )
    after = evaluate(
        agent,
        eval_envs,
        args.eval_episodes,
        split="test",
        seed=EVAL_SEED,
        num_samples=args.eval_episodes,
    )
    print(f"    after:  {after}\n")
    print(side_by_side(before.samples[: args.samples], after.samples[: args.samples]))

    delta = after.reward_mean - before.reward_mean
    lo, hi = after.reward_ci
    print(
        f"mean test reward: {before.reward_mean:+.3f} -> {after.reward_mean:+.3f} "
        f"({delta:+.3f}; after: 95% CI {lo:+.3f}..{hi:+.3f}, n={after.n_episodes})"
    )
    print(
        f"KL to the untrained model (k3 estimate): {before.kl:.2f} -> {after.kl:.2f} nats per "
        "completion; "
        f"perplexity {before.perplexity:.1f} -> {after.perplexity:.1f}; "
        f"distinct-2 {before.distinct_2:.3f} -> {after.distinct_2:.3f}"
    )
    print(verdict_line(after, before))
    print(
        f"training: {agent.iteration} iterations, {agent.episodes} episodes, {agent.tokens} "
        f"tokens in {train_s:.0f} s ({agent.tokens / max(train_s, 1e-9):.0f} completion tokens "
        f"per second, updates included)"
    )

    curve = out / "reward_curve.png"
    try:
        save_curve(
            agent.history,
            before.reward_mean,
            after.reward_mean,
            curve,
            f"{cls.__name__} on {args.env} ({args.model})",
        )
    except ImportError:
        print("matplotlib is not installed: no reward_curve.png (pip install matplotlib)")
    checkpoint = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    result = {
        "before": {**before.as_dict(), "samples": before.samples},
        "after": {**after.as_dict(), "samples": after.samples},
        "improvement": delta,
        "verdict": verdict(after, {"untrained": before}),
        "iterations": agent.iteration,
        "episodes": agent.episodes,
        "tokens": agent.tokens,
        "train_seconds": train_s,
        "total_seconds": time.perf_counter() - t_start,
        "checkpoint": str(checkpoint),
    }
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    print(
        f"saved {curve}, checkpoint {checkpoint}, logs {out / 'progress.csv'}, {out / 'demo.json'}"
    )
    print(f"next: textgym eval {out}   |   textgym train --out {out} --resume --episodes N")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return result


if __name__ == "__main__":
    main()

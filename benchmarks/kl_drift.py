"""No signal, no drift: the KL term must not move a policy that gets no reward.

Two runs of a learner with its default config (KL penalty on) and a tiny LM on ~25-character
prompts, where forwards of different shapes round differently (the regime of SmolLM2-135M):

* ``zero``: every reward is 0. Logs the KL to the reference and the largest parameter change
  per iteration; both must stay 0.
* ``real``: the reward is the fraction of ``a`` in the completion. Logs the learning curve, which
  the fix must leave unchanged or better.

    python -m benchmarks.kl_drift --agent grpo --out runs/kl-drift.json
    python -m benchmarks.kl_drift --plot before.json after.json --png figures/kl-drift.png

The script uses only the public API, so the same file measures an older checkout too
(``PYTHONPATH=<checkout> python benchmarks/kl_drift.py ...``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401  (registers the ids)
from agents import LEARNERS, LMPolicy
from benchmarks.stats import machine_info
from textgym.models import tiny_lm

PROMPTS = [f"Q: what is {a} + {b}? A:" for a in range(5, 40) for b in range(50, 53)]


def zero(prompts, completions, references):
    return [0.0] * len(prompts)


def fraction_of_a(prompts, completions, references):
    return [c.count("a") / max(len(c), 1) for c in completions]


def run(learner: str, scorer, iterations: int, seed: int, lr: float) -> list[dict[str, float]]:
    envs = gym.make_vec(
        "TextGen-v0",
        num_envs=8,
        prompts=PROMPTS,
        scorer=scorer,
        tokenizer="char",
        max_new_tokens=12,
    )
    vocab = int(envs.single_action_space.n)
    policy = LMPolicy(tiny_lm(vocab_size=vocab, seed=seed), precision="fp32")
    cls = LEARNERS[learner]
    agent = cls(policy, envs, cls.Config(progress=False, seed=seed, lr=lr))
    start = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    rows = []
    for _ in range(iterations):
        row = agent.train_iteration()
        moved = max(float((v - start[k]).abs().max()) for k, v in policy.state_dict().items())
        rows.append({"reward": row["reward"], "kl": row["kl"], "max_change": moved})
    return rows


def plot(before: dict, after: dict, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (
        ("zero", "kl", "zero reward: KL to reference (nats)"),
        ("zero", "max_change", "zero reward: max |parameter change|"),
        ("real", "reward", "real reward: training reward"),
    )
    for data, label, style in ((before, "before", "--"), (after, "after", "-")):
        for ax, (run_name, field, title) in zip(axes, panels):
            curves = np.array([[r[field] for r in rows] for rows in data[run_name]])
            mean = np.nanmean(curves, 0)
            ax.plot(np.arange(1, len(mean) + 1), mean, style, label=label)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("iteration")
    axes[0].legend()
    fig.suptitle(
        f"{after['learner'].upper()} default config, tiny LM, {after['seeds']} seeds (mean)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="grpo", choices=sorted(LEARNERS))
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3, help="high enough for a tiny LM")
    parser.add_argument("--out", help="write the curves as JSON")
    parser.add_argument("--plot", nargs=2, metavar=("BEFORE", "AFTER"), help="JSON files")
    parser.add_argument("--png", default="kl-drift.png")
    args = parser.parse_args(argv)
    if args.plot:
        before, after = (json.loads(Path(path).read_text()) for path in args.plot)
        plot(before, after, args.png)
        return
    torch.set_num_threads(1)
    result = {"learner": args.agent, "seeds": args.seeds, "machine": machine_info()}
    for key, scorer in (("zero", zero), ("real", fraction_of_a)):
        result[key] = [
            run(args.agent, scorer, args.iterations, s, args.lr) for s in range(args.seeds)
        ]
        last = [rows[-1] for rows in result[key]]
        print(
            f"{key}: final reward {np.mean([r['reward'] for r in last]):.3f}, "
            f"KL {np.nanmean([r['kl'] for r in last]):.4f}, "
            f"max parameter change {max(r['max_change'] for r in last):.2e}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()

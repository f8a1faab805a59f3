"""Training through a failing scorer: a fault-injection run beside a clean one.

    python -m benchmarks.fault_injection --env TextGen-Copy-v0 --agent grpo --iterations 30 \\
        --seeds 0 1 --out benchmarks/figures/fault_injection.json

Per seed, two runs with the same seeds and budget: a clean one, and one whose scorer raises on
``--raise-p`` of its calls and hangs past the timeout on ``--hang-p`` (drawn from a seeded RNG).
Both envs are made with ``on_failure="end_episode"`` and ``RetryPolicy(retries=1,
timeout=--timeout)``: a call that still fails ends its episodes as failed, and the learner
leaves them out of the update (``agents.base.Learner.train_iteration``). Printed per run:
episodes, scorer calls, faults injected (raised + hung), what the env counted (retries,
timeouts, failed calls), the failed episodes the learner logged (left out of the loss), the
training reward at the end, and the greedy test reward with its 95% CI and the share of
distinct completions. The check the figures
must pass: every injected fault is counted, as a retry or as a failed call
(``retries + failed_calls == raised + hung``), and the failed episodes the learner logged equal
the env's. ``--out`` also writes a PNG of both reward curves beside the JSON.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import numpy as np
import torch

from agents import evaluate
from agents.cli import build_policy, learner_class, make_envs
from benchmarks.stats import cpu_flags_text, machine_info
from textgym import RetryPolicy


class FaultInjector:
    """A scorer that raises on ``raise_p`` of its calls and hangs on ``hang_p`` (seeded), and
    counts both; otherwise it is ``scorer``. A hung call returns once :meth:`release` is called
    (or after ``hang_s`` seconds), long after the env stopped waiting for it."""

    def __init__(self, scorer: Any, seed: int, raise_p: float, hang_p: float, hang_s: float = 30):
        self.scorer, self.rng = scorer, np.random.default_rng(seed)
        self.raise_p, self.hang_p, self.hang_s = raise_p, hang_p, hang_s
        self.calls = self.raised = self.hung = 0
        self.released = threading.Event()

    def __call__(self, prompts: Any, completions: Any, references: Any) -> Any:
        self.calls += 1
        u = self.rng.random()
        if u < self.hang_p:
            self.hung += 1
            self.released.wait(self.hang_s)
        elif u < self.hang_p + self.raise_p:
            self.raised += 1
            raise ConnectionError("injected: scorer unreachable")
        return self.scorer(prompts, completions, references)

    def release(self) -> None:
        self.released.set()


def run(args: argparse.Namespace, seed: int, faulty: bool) -> dict[str, Any]:
    retry = RetryPolicy(retries=1, backoff=0.0, timeout=args.timeout)
    env_kwargs = {"retry": retry, "on_failure": "end_episode"}
    envs = make_envs(args.env, args.num_envs, env_kwargs)
    injector = None
    if faulty:
        scorer = envs.core.scorer
        injector = FaultInjector(scorer, seed, args.raise_p, args.hang_p)
        envs = make_envs(args.env, args.num_envs, {**env_kwargs, "scorer": injector})
    policy = build_policy("tiny", envs, seed=seed)
    cls = learner_class(args.agent)
    agent = cls(policy, envs, cls.Config.for_policy(policy, seed=seed, progress=False))
    start = time.perf_counter()
    try:
        agent.learn(iterations=args.iterations)
    finally:
        if injector is not None:
            injector.release()
    seconds = time.perf_counter() - start
    eval_envs = make_envs(args.env, args.num_envs, {})
    result = evaluate(
        agent, eval_envs, args.eval_episodes, split="test", seed=1, deterministic=True
    )
    counts = envs.fault_counts
    out = {
        "seed": seed,
        "faulty": faulty,
        "episodes": agent.episodes,
        "seconds": seconds,
        "scorer_calls": injector.calls if injector else None,
        "injected": (injector.raised + injector.hung) if injector else 0,
        "raised": injector.raised if injector else 0,
        "hung": injector.hung if injector else 0,
        "retries": counts.retries,
        "timeouts": counts.timeouts,
        "failed_calls": counts.failed_calls,
        "env_failed_episodes": counts.failed_episodes,
        "learner_failed_episodes": agent.failed_episodes,
        "train_reward_curve": [row["reward"] for row in agent.history],
        "test_reward": result.reward_mean,
        "test_reward_ci": list(result.reward_ci),
        "distinct": result.distinct,
        "samples": [s["completion"] for s in result.samples[:3]],
    }
    out["faults_all_counted"] = out["retries"] + out["failed_calls"] == out["injected"]
    out["failed_episodes_agree"] = out["env_failed_episodes"] == out["learner_failed_episodes"]
    return out


def plot(runs: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in runs:
        label = f"seed {r['seed']} {'faulty' if r['faulty'] else 'clean'}"
        ax.plot(r["train_reward_curve"], label=label, linestyle="--" if r["faulty"] else "-")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training reward (failed episodes left out)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="TextGen-Copy-v0")
    parser.add_argument("--agent", default="grpo")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--raise-p", type=float, default=0.10)
    parser.add_argument("--hang-p", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=0.5, help="seconds per scorer attempt")
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON results (and a PNG beside it)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info()
    print(cpu_flags_text(machine))
    runs = []
    for seed in args.seeds:
        for faulty in (False, True):
            r = run(args, seed, faulty)
            runs.append(r)
            print(
                f"seed {seed} {'faulty' if faulty else 'clean '}: {r['episodes']} episodes, "
                f"{r['seconds']:.0f} s, injected {r['injected']} ({r['raised']} raised, "
                f"{r['hung']} hung) of {r['scorer_calls']} calls; env: {r['retries']} retries, "
                f"{r['timeouts']} timeouts, {r['failed_calls']} failed calls, "
                f"{r['env_failed_episodes']} failed episodes; learner left out "
                f"{r['learner_failed_episodes']}; train reward {r['train_reward_curve'][-1]:.3f}; "
                f"test reward {r['test_reward']:.3f} [{r['test_reward_ci'][0]:.3f}, "
                f"{r['test_reward_ci'][1]:.3f}], distinct {r['distinct']:.2f}; "
                f"all faults counted: {r['faults_all_counted']}",
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "machine": machine, "runs": runs}, f, indent=1)
        plot(runs, args.out.rsplit(".", 1)[0] + ".png")


if __name__ == "__main__":
    main()

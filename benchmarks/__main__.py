"""Quality benchmark: agents x tasks x seeds under one budget -> leaderboard, curves, JSON.

    python -m benchmarks --preset quick            # or: textgym bench --preset quick
    python -m benchmarks --preset tiny --out runs/bench-tiny
    python -m benchmarks --preset quick --agents ppo grpo --no-trl
    python -m benchmarks --preset quick --agents ppo sb3-ppo --tasks TextGen-Copy-v0

Agents: our learners (ppo, grpo, rloo, reinforce, a2c, nlpo, sft+ppo) and the peers sb3-ppo
(Stable-Baselines3 PPO, character tasks) and trl-grpo (TRL's GRPOTrainer, SmolLM2 tasks; needs
trl, else skipped with a note), plus the untrained and random reference rows of every task.

Re-running with the same --out finishes an interrupted benchmark: finished cells are skipped.
Presets: tiny (seconds, for tests), quick (about two hours on a 2-core CPU), full (one GPU),
peers (our PPO and SB3's PPO, each tuned by the same sweep: python -m benchmarks.sweep).
The other benchmark scripts: python -m benchmarks.env_throughput, .rollout_vs_generate,
.learner_throughput, .logprob_memory, .task_scores, .trl_baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from agents import LEARNERS
from benchmarks.harness import run_benchmark
from benchmarks.peers import PEERS
from benchmarks.presets import PRESETS, get_preset
from benchmarks.report import results_section, update_results_md


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="textgym bench",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="quick", choices=list(PRESETS))
    p.add_argument("--out", default=None, help="output folder (default runs/bench-<preset>)")
    p.add_argument(
        "--agents",
        nargs="*",
        default=None,
        help="only these agents (learners or peers: sb3-ppo, trl-grpo)",
    )
    p.add_argument("--tasks", nargs="*", default=None, help="only these env ids")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 instead of the preset's")
    p.add_argument("--no-trl", action="store_true", help="skip the TRL GRPOTrainer comparison")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    p.add_argument("--list", action="store_true", help="print the preset's cells and exit")
    p.add_argument(
        "--results-md",
        default=None,
        metavar="PATH",
        help="also write the leaderboard as this preset's section of PATH (e.g. "
        "benchmarks/RESULTS.md; its plots go to figures/ beside it)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset)
    if args.agents is not None:
        known = {a for t in preset.tasks for a in (t.agents or [])} | set(preset.agents)
        names = {*LEARNERS, *(f"sft+{a}" for a in LEARNERS), *PEERS}
        unknown = set(args.agents) - known - names
        if unknown:
            raise SystemExit(
                f"unknown agent(s) {', '.join(sorted(unknown))}; preset "
                f"{preset.name!r} has {', '.join(sorted(known))}"
            )
        preset.agents = list(args.agents)
        for task in preset.tasks:
            if task.agents is not None:
                task.agents = [a for a in task.agents if a in args.agents]
    if args.tasks is not None:
        unknown = set(args.tasks) - {t.env_id for t in preset.tasks}
        if unknown:
            raise SystemExit(f"not in preset {preset.name!r}: {', '.join(sorted(unknown))}")
        preset.tasks = [t for t in preset.tasks if t.env_id in args.tasks]
    if args.seeds is not None:
        preset.seeds = list(range(args.seeds))
        for task in preset.tasks:
            task.seeds = None
    if args.threads:
        preset.threads = args.threads
    if args.list:
        for task, agent, seed in preset.cells():
            print(f"{task.env_id:<22} {task.model:<14} {agent:<10} seed {seed}")
        return 0

    out = args.out or f"runs/bench-{preset.name}"
    start = time.perf_counter()
    print(f"benchmark preset {preset.name!r} ({preset.description}) -> {out}", flush=True)
    results = run_benchmark(
        preset,
        out,
        progress=not args.no_progress,
        trl=not args.no_trl,
        log=lambda s: print(s, flush=True),
    )
    print(Path(out, "leaderboard.md").read_text())
    if args.results_md:
        import shutil

        target = Path(args.results_md)
        # The quick leaderboard's plots in figures/, another preset's in figures/<preset>/ (the
        # same task names would overwrite them).
        figures = "figures" if preset.name == "quick" else f"figures/{preset.name}"
        (target.parent / figures).mkdir(parents=True, exist_ok=True)
        plots = [Path(out, f"curves-{t['env_id']}.png") for t in results["tasks"]]
        plots = [plot for plot in plots if plot.exists()]
        for plot in plots:
            shutil.copyfile(plot, target.parent / figures / plot.name)
        command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
        section = results_section(results, plots, command=command, figures=figures)
        update_results_md(target, section, preset.name)
        print(f"wrote the {preset.name!r} section of {target} (plots in {target.parent / figures})")
    print(
        f"total {time.perf_counter() - start:.0f} s "
        f"({results['run']['cells_run']} cells run, {results['run']['cells_skipped']} skipped)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

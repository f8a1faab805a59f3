"""Hyperparameter sweeps at equal budget: each setting of a grid on a preset's tasks, a few seeds.

    python -m benchmarks.sweep --preset peers --tasks TextGen-Copy-v0 --agents sb3-ppo ppo --seeds 2

A grid (:data:`benchmarks.presets.SWEEPS`, per preset and agent) is a list of settings; each one
*replaces* the preset's ``config[agent]`` of a task (so a setting means the same whatever the
preset chose: the agent's defaults plus the setting). Every (task, agent, setting, seed) cell
trains and is evaluated exactly like a benchmark cell (:func:`benchmarks.harness.run_cell`: the
task's budget, test prompts and decoding) and is written to
``<out>/cells/<task>/<agent>-<k>-seed<s>.json``; a re-run skips the cells it has (same settings).
The summary, ``<out>/sweep.md`` (also printed): per task and agent, one row per setting with the
test reward of each seed, their mean, the share of distinct completions, the wall time per cell
and one test sample; the best mean in bold. Giving both sides of a comparison the same grid size,
seeds and budget is what makes "tuned with the same effort" checkable.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import cell_key, run_cell, write_json_atomic
from benchmarks.presets import SWEEPS, get_preset


def sweep_cells(preset_name: str, tasks=None, agents=None, seeds=(0,)) -> list[tuple]:
    """(task, agent, index, setting, seed) of every cell of the sweep, in run order: per task,
    per agent, per setting, per seed."""
    preset = get_preset(preset_name)
    grids = SWEEPS.get(preset_name)
    if not grids:
        raise SystemExit(f"preset {preset_name!r} has no sweep; sweeps: {', '.join(SWEEPS)}")
    unknown = set(agents or ()) - set(grids)
    if unknown:
        raise SystemExit(f"no grid for {', '.join(sorted(unknown))}; grids: {', '.join(grids)}")
    names = {t.env_id for t in preset.tasks}
    if tasks and set(tasks) - names:
        raise SystemExit(f"not in preset {preset_name!r}: {', '.join(sorted(set(tasks) - names))}")
    out = []
    for task in preset.tasks:
        if tasks and task.env_id not in tasks:
            continue
        for agent, grid in grids.items():
            if agents and agent not in agents:
                continue
            for k, setting in enumerate(grid):
                cell_task = copy.deepcopy(task)
                cell_task.config[agent] = copy.deepcopy(setting)
                out += [(cell_task, agent, k, setting, seed) for seed in seeds]
    return out


def run_sweep(cells: list[tuple], out_dir: str | Path, log=print) -> list[dict[str, Any]]:
    """Run (or reuse) every cell; returns the cells' results."""
    out = Path(out_dir)
    results = []
    for n, (task, agent, k, setting, seed) in enumerate(cells, start=1):
        path = out / "cells" / task.env_id / f"{agent}-{k}-seed{seed}.json"
        key = cell_key(task, agent, seed)
        stored = json.loads(path.read_text()) if path.exists() else {}
        label = f"[{n}/{len(cells)}] {task.env_id} {agent} #{k} {setting} seed {seed}"
        if stored.get("key") != key:
            stored = run_cell(task, agent, seed)
            stored["key"] = key
            write_json_atomic(path, stored)
            log(f"{label}: test reward {stored['eval']['reward_mean']:.3f}")
        else:
            log(f"{label}: done before, skipped")
        results.append({**stored, "index": k, "setting": setting})
    return results


def sweep_markdown(results: list[dict[str, Any]]) -> str:
    """One table per (task, agent): the settings, each seed's test reward, the mean (best in
    bold), distinct share, wall seconds per cell and the first test sample of the first seed."""
    groups: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for r in results:
        groups.setdefault((r["env_id"], r["agent"]), {}).setdefault(r["index"], []).append(r)
    lines = []
    for (env_id, agent), by_setting in groups.items():
        means = {
            k: float(np.mean([c["eval"]["reward_mean"] for c in cs]))
            for k, cs in by_setting.items()
        }
        best = max(means, key=means.get)
        lines += [
            f"#### {env_id}: {agent}",
            "",
            "| # | setting | test reward per seed | mean | distinct | wall s | sample (prompt -> completion) |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, cs in sorted(by_setting.items()):
            cs = sorted(cs, key=lambda c: c["seed"])
            setting = ", ".join(f"{a}={v}" for a, v in cs[0]["setting"].items()) or "defaults"
            seeds = " / ".join(f"{c['eval']['reward_mean']:.3f}" for c in cs)
            mean = f"{means[k]:.3f}"
            distinct = np.mean([c["eval"]["distinct"] for c in cs])
            wall = np.mean([c["wall_seconds"] for c in cs])
            s = cs[0]["samples"][0]
            sample = f"`{s['prompt']}` -> `{s['completion']}`".replace("|", "\\|")
            lines.append(
                f"| {k} | {setting} | {seeds} | {f'**{mean}**' if k == best else mean} "
                f"| {distinct:.2f} | {wall:.0f} | {sample} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sweep", description=__doc__.split("\n")[0]
    )
    p.add_argument("--preset", default="peers", help="a preset with a grid in presets.SWEEPS")
    p.add_argument("--tasks", nargs="*", default=None, help="only these env ids")
    p.add_argument("--agents", nargs="*", default=None, help="only these agents' grids")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per setting (2)")
    p.add_argument("--out", default=None, help="output folder (default runs/sweep-<preset>)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    p.add_argument("--list", action="store_true", help="print the cells and exit")
    args = p.parse_args(argv)
    cells = sweep_cells(args.preset, args.tasks, args.agents, range(args.seeds))
    if args.list:
        for task, agent, k, setting, seed in cells:
            print(f"{task.env_id:<20} {agent:<8} #{k} seed {seed}: {setting}")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/sweep-{args.preset}")
    start = time.perf_counter()
    results = run_sweep(cells, out, log=lambda s: print(s, flush=True))
    text = sweep_markdown(results)
    (out / "sweep.md").write_text(text)
    print(text)
    print(f"wrote {out / 'sweep.md'} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

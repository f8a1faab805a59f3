"""The quality benchmark's outputs: the leaderboard (Markdown), its section of
``benchmarks/RESULTS.md``, the TRL speed table, and one learning-curve PNG per task.

Everything here reads the results dict that :func:`benchmarks.harness.run_benchmark` returns
(and writes to ``results.json``); nothing runs a model.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import COLLAPSED
from benchmarks.stats import (
    BOOTSTRAP,
    NOT_LEARNED,
    REFERENCES,
    cpu_flags_text,
    curve_band,
    smooth,
)

NO_ROW_LEARNED = "no row learned at this budget"
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "x", "P", "*")
SAMPLES = 3  # test samples per row under each leaderboard table


def nobody_learned(task: dict[str, Any]) -> bool:
    """Every agent row of a task is marked not learned (collapsed, or its CI overlaps, or lies
    below, a reference row's): :func:`agents.evaluation.verdict` said so for each."""
    rows = [r for r in task["rows"] if r["agent"] not in REFERENCES]
    return bool(rows) and all(r.get("not_learned") for r in rows)


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per task: training reward vs episodes, mean over seeds with a 95% bootstrap band
    (smoothed), every agent on one plot, each with its own line style and marker (so that lines
    on top of each other stay visible); the reference rows as dashed lines (test reward). When
    no agent row learned, the plot says so across its middle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task in results["tasks"]:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        drew = False
        for k, (agent, cells) in enumerate(
            (a, c) for a, c in task["cells"].items() if a not in REFERENCES
        ):
            curves = [c["curve"] for c in cells if c["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = np.array([row[0] for row in curves[0][:n]], dtype=float)
            window = max(1, n // 15)
            ys = [smooth(np.array([r[2] for r in c[:n]], dtype=float), window) for c in curves]
            mean, lo, hi = curve_band(ys)
            (line,) = ax.plot(
                x,
                mean,
                label=f"{agent} (n={len(curves)})",
                linestyle=LINE_STYLES[k % len(LINE_STYLES)],
                marker=MARKERS[k % len(MARKERS)],
                markevery=max(1, n // 8),
                markersize=5,
                markerfacecolor="none",
            )
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
            drew = True
        styles = {"untrained": ("k", "--"), "random": ("grey", ":")}
        for row in task["rows"]:
            if row["agent"] in REFERENCES:
                color, style = styles[row["agent"]]
                ax.axhline(
                    row["reward_mean"], color=color, linestyle=style, label=f"{row['agent']} (test)"
                )
        ax.set_xlabel("training episodes")
        ax.set_ylabel("mean training reward (smoothed)")
        ax.set_title(f"{task['env_id']} ({task['model']})")
        ax.grid(alpha=0.3)
        if nobody_learned(task):
            ax.text(
                0.5,
                0.5,
                NO_ROW_LEARNED,
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=13,
                color="tab:red",
                alpha=0.8,
            )
        if drew or task["rows"]:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path = out / f"curves-{task['env_id']}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def leaderboard_markdown(results: dict[str, Any], plots: list[Path] | None = None) -> str:
    """The leaderboard: one table per task, best mean test reward first, reference rows last."""
    m, v = results["machine"], results["versions"]
    preset = results["preset"]
    lines = [
        f"# textgym benchmark: preset `{preset['name']}`",
        "",
        f"{preset['description']}.",
        "",
        f"Machine: {m['cpu']} (CPU flags: {cpu_flags_text(m)}), {m['cores']} cores, "
        f"{m['torch_threads']} torch threads, GPU: {m['gpu'] or 'none'}; torch {v['torch']}, "
        f"transformers {v['transformers']}, gymnasium {v['gymnasium']}; {results['date']}.",
        "",
        "Test reward: mean over seeds of the mean test-split reward "
        f"(the same prompts for every row), with a 95% bootstrap CI (seeds, then episodes; "
        f"{BOOTSTRAP} resamples, seeded); seeds: how many the row has. Each task says whether "
        "its test completions are greedy or sampled (the random row always samples). "
        "Distinct: share of distinct completions among all test completions (mean over seeds); "
        "entropy: the policy's mean per-token entropy over the test completions (nats; random: "
        "log of the allowed tokens). KL: summed per-token log pi - log ref of the test "
        "completions (nats; with sampled completions an estimate of KL(pi || ref)); perplexity "
        "of the completions under the untrained model; distinct-2: distinct word bigrams / "
        "bigrams. Wall: seconds per cell (training + evaluation); tokens/s: generated training "
        "tokens per training second. Peers (same budget, evaluated the same way): sb3-ppo = "
        "Stable-Baselines3 PPO with textgym's token extractor, trl-grpo = TRL's GRPOTrainer "
        "with our GRPO's settings.",
        "",
        f"{NOT_LEARNED} = not learned: the row's test completions collapsed (distinct < "
        f"{COLLAPSED}: (nearly) all the same) or its 95% CI overlaps the CI of the untrained or "
        'random row of the same task (= untrained / = random); ✓ = learned. "k/n seeds '
        "collapsed\": k of the row's n seeds collapsed on their own.",
    ]
    for task in results["tasks"]:
        spec = task["spec"]
        budget = f"{spec['episodes']:,} training episodes ({spec['num_envs']} per iteration)"
        if spec.get("time_limit"):  # whichever comes first (out-of-reach episodes: equal time)
            budget += f" or {spec['time_limit']:.0f} s of training, whichever comes first"
        if spec.get("max_tokens"):
            budget += f", at most {spec['max_tokens']:,} tokens"
        reward_mode = (spec.get("env_kwargs") or {}).get("reward_mode", "sparse")
        seeds_per_row = ", ".join(f"{r['agent']} {len(r['seeds'])}" for r in task["rows"])
        lines += [
            "",
            f"## {task['env_id']} ({task['model']})",
            "",
            f"Budget per agent: {budget}; training reward: {reward_mode} (every row); "
            f"evaluation: {spec['eval_episodes']} test episodes "
            f"({'greedy' if spec.get('greedy', True) else 'sampled'}); seeds per row: "
            f"{seeds_per_row}.",
            "",
            "| rank | agent | seeds | test reward | 95% CI | learned | distinct | entropy | KL "
            "| perplexity | distinct-2 | wall s | tokens/s | tokens |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        agents = sorted(
            (r for r in task["rows"] if r["agent"] not in REFERENCES),
            key=lambda r: -r["reward_mean"],
        )
        refs = [r for r in task["rows"] if r["agent"] in REFERENCES]
        for rank, r in enumerate([*agents, *refs], start=1):
            label = str(rank) if r["agent"] not in REFERENCES else "ref"
            why = r.get("not_learned")
            mark = "ref" if r["agent"] in REFERENCES else f"{NOT_LEARNED} {why}" if why else "✓"
            if r["agent"] not in REFERENCES and why != "collapsed" and r.get("collapsed_seeds"):
                mark += f" ({r['collapsed_seeds']}/{len(r['seeds'])} seeds collapsed)"
            lines.append(
                f"| {label} | {r['agent']} | {len(r['seeds'])} | {_fmt(r['reward_mean'])} "
                f"| {_fmt(r['reward_ci_low'])}..{_fmt(r['reward_ci_high'])} | {mark} "
                f"| {_fmt(r.get('distinct'), 2)} | {_fmt(r.get('entropy'), 2)} | {_fmt(r['kl'], 2)} "
                f"| {_fmt(r['perplexity'], 1)} | {_fmt(r['distinct_2'])} "
                f"| {_fmt(r['wall_seconds'], 1)} | {_fmt(r['tokens_per_s'], 0)} "
                f"| {r['tokens']:,} |"
            )
        if nobody_learned(task):
            lines += [
                "",
                f"**{NO_ROW_LEARNED[0].upper() + NO_ROW_LEARNED[1:]}**: every agent row is marked "
                f"{NOT_LEARNED}, so their order above says nothing about the agents.",
            ]
        for c in task.get("comparisons") or []:
            verdict = (
                f"{c['agent']} is ahead"
                if c["ci_low"] > 0
                else f"{c['peer']} is ahead"
                if c["ci_high"] < 0
                else "no clear difference (the CI contains 0)"
            )
            lines += [
                "",
                f"- {c['agent']} - {c['peer']} (the same algorithm): "
                f"{c['difference']:+.3f} test reward, 95% CI {c['ci_low']:+.3f}..{c['ci_high']:+.3f} "
                f"(bootstrap of the difference: each row's seeds, the test prompts paired): "
                f"{verdict}.",
            ]
        for agent, why in (task.get("notes") or {}).items():
            lines += ["", f"- {agent}: {why}"]
        lines += samples_markdown(task)
        png = f"curves-{task['env_id']}.png"
        if plots is None or any(p.name == png for p in plots):
            lines += ["", f"![{task['env_id']} learning curves]({png})"]
    trl = results.get("trl")
    if trl is not None:
        lines += ["", "## Speed vs TRL's GRPOTrainer", "", trl_markdown(trl)]
    return "\n".join(lines) + "\n"


def code_span(text: str) -> str:
    """``text`` (model-written: hostile) as one Markdown code span: control characters and
    newlines escaped as in JSON, the fence longer than any run of backticks inside; "(empty)"
    for an empty text."""
    if not text:
        return "(empty)"
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    fence = "`" * (max((len(run) for run in re.findall("`+", inner)), default=0) + 1)
    pad = " " if inner.startswith("`") or inner.endswith("`") else ""
    return f"{fence}{pad}{inner}{pad}{fence}"


def samples_markdown(task: dict[str, Any], n: int = SAMPLES) -> list[str]:
    """What each row wrote: the first ``n`` test samples (prompt -> completion, score) of the
    row's first seed; the prompts are the same for every row."""
    lines = []
    for agent, cells in task["cells"].items():
        samples = min(cells, key=lambda c: c["seed"]).get("samples") or []
        if samples:
            shown = ", ".join(
                f"{code_span(s['prompt'])} -> {code_span(s['completion'])} ({s['score']:.2f})"
                for s in samples[:n]
            )
            lines.append(f"- {agent}: {shown}")
    if lines:
        lines = [
            "",
            f"Samples (first {n} test prompts, first seed; prompt -> completion (score)):",
            "",
            *lines,
        ]
    return lines


def results_section(
    results: dict[str, Any], plots: list[Path], *, command: str, figures: str = "figures"
) -> str:
    """The leaderboard as a section of ``benchmarks/RESULTS.md``: a ``## `textgym bench --preset
    <name>``` heading, the command and wall time, then the leaderboard one heading level down,
    its plots linked from ``figures/``, between markers that :func:`update_results_md` finds."""
    name = results["preset"]["name"]
    body = leaderboard_markdown(results, plots).split("\n", 1)[1].lstrip("\n")
    body = "\n".join("#" + line if line.startswith("## ") else line for line in body.splitlines())
    for plot in plots:
        body = body.replace(f"]({plot.name})", f"]({figures}/{plot.name})")
    seconds = (results.get("run") or {}).get("seconds")
    wall = f"{seconds:,.0f} s ({seconds / 60:.1f} min)" if seconds else "n/a"
    cells = [c for t in results["tasks"] for cs in t["cells"].values() for c in cs]
    cell_seconds = sum(c.get("wall_seconds") or 0.0 for c in cells)
    trl = results.get("trl") or {}
    trl_seconds = sum(
        sum(r.get("step_seconds") or []) for r in (trl.get("trainers") or {}).values()
    )
    return "\n".join(
        [
            f"<!-- bench:{name}:start (written by `python -m benchmarks --results-md`) -->",
            f"## `textgym bench --preset {name}`",
            "",
            f"Command: `{command}`. Wall time of this run: {wall} "
            f"({results['run']['cells_run']} cells run, {results['run']['cells_skipped']} "
            f"reused from an earlier run of the same settings); all {len(cells)} cells took "
            f"{cell_seconds:,.0f} s ({cell_seconds / 60:.1f} min)"
            + (f", plus {trl_seconds:,.0f} s of TRL speed-comparison steps" if trl_seconds else "")
            + ".",
            "",
            body.rstrip("\n"),
            f"<!-- bench:{name}:end -->",
        ]
    )


def update_results_md(path: str | os.PathLike, section: str, name: str) -> None:
    """Put ``section`` (from :func:`results_section`) into the Markdown file ``path``: in place
    of the one between the same preset's markers, else at the end. The rest is kept."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Measured results\n"
    start, end = f"<!-- bench:{name}:start", f"<!-- bench:{name}:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def trl_markdown(trl: dict[str, Any]) -> str:
    if trl.get("error"):
        return f"Not run: {trl['error']}"
    s = trl["settings"]
    lines = [
        f"{s['model']}, VADER reward on TextGen-v0's train prompts, {s['prompts']} prompts x "
        f"{s['group_size']} completions x {s['max_new_tokens']} tokens per iteration, "
        f"{s['iterations']} measured iterations (after {s['warmup']} warm-up), fp32, one "
        f"update epoch, lr {s['lr']}, {s['threads']} torch threads, the same process; TRL "
        f"gradient checkpointing {'on' if s.get('trl_gradient_checkpointing', True) else 'off'}.",
        "",
        "| trainer | samples/s | ratio ours / TRL | mean reward (measured iterations) "
        "| s / iteration | of which generation | the rest (update) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = trl["trainers"].get("trl_grpo", {}).get("samples_per_s")
    for name, r in trl["trainers"].items():
        ratio = r["samples_per_s"] / base if base and name != "trl_grpo" else None
        lines.append(
            f"| {name} | {_fmt(r['samples_per_s'], 2)} | "
            f"{_fmt(ratio, 2) + 'x' if ratio else '1 (baseline)' if name == 'trl_grpo' else 'n/a'}"
            f" | {_fmt(r['reward_mean'])} | {_fmt(r['seconds_per_iteration'], 1)} "
            f"| {_fmt(r.get('generation_seconds'), 1)} | {_fmt(r.get('update_seconds'), 1)} |"
        )
    return "\n".join(lines)

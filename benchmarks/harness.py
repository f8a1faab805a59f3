"""The quality benchmark: agents x tasks x seeds under one budget, with reference rows.

A *cell* is (task, agent, seed). Agent cells train a fresh policy for the task's budget and then
evaluate it on the test split; the reference rows are ``untrained`` (the initial model, evaluated
the same way) and ``random`` (tokens uniform over ``action_masks()``). Peer rows (``sb3-ppo``,
``trl-grpo``; :mod:`benchmarks.peers`) train the best-known implementation of the same algorithm
under the same budget and are evaluated the same way; a peer whose package is missing is skipped
with a note. Every cell also records ``distinct`` (the share of distinct completions among all
its test completions) and ``entropy`` (the policy's mean per-token entropy over them), and the
leaderboard marks a row *not learned* when its completions collapsed or its score is
indistinguishable from the untrained/random rows (:func:`not_learned`). Every cell writes
``cells/<task>/<agent>-seed<k>.json`` atomically when it is done, so an interrupted benchmark
re-run with the same output folder only runs the cells it has not finished (a cell whose
settings changed is run again).

Outputs in the output folder: ``results.json`` (preset, package versions, machine, every cell
with its per-iteration training curve), ``leaderboard.md`` and ``curves-<task>.png``.

    results = run_benchmark(get_preset("quick"), "runs/bench-quick")
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.presets import Preset, TaskSpec

EVAL_SEED = 1234  # every cell of a task is evaluated on the same test prompts
BOOTSTRAP = 2000
REFERENCES = ("untrained", "random")
COLLAPSED = 0.1  # a row whose share of distinct test completions is below this collapsed
NOT_LEARNED = "✗"  # the leaderboard's mark of a row that did not learn


# -- machine and versions --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU (if any), OS and Python."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for name in ("textgym", "torch", "transformers", "gymnasium", "numpy", "trl", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- statistics --------------------------------------------------------------------------------


def bootstrap_ci(
    groups: list[list[float]], n_boot: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and a percentile bootstrap CI of the mean over ``groups`` (one list of episode
    rewards per seed): resample the seeds, then the episodes within each (two levels; one seed is
    a plain episode bootstrap). Seeded, so the same results give the same interval."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups if len(g)]
    if not groups:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    per_seed = np.stack(
        [g[rng.integers(0, len(g), size=(n_boot, len(g)))].mean(1) for g in groups]
    )  # (S, B)
    s = len(groups)
    pick = rng.integers(0, s, size=(n_boot, s)) if s > 1 else np.zeros((n_boot, 1), dtype=int)
    boot = per_seed[pick, np.arange(n_boot)[:, None]].mean(1)
    mean = float(np.mean([g.mean() for g in groups]))
    alpha = (1 - level) / 2
    return mean, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def curve_band(
    curves: list[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and a 95% bootstrap band (over seeds) per point; curves are cut to the
    shortest one. With one seed the band is empty (low = high = mean)."""
    n = min(len(c) for c in curves)
    y = np.stack([c[:n] for c in curves])  # (S, n)
    mean = y.mean(0)
    if len(curves) == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(curves), size=(n_boot, len(curves)))
    boot = y[pick].mean(1)  # (B, n)
    return mean, np.quantile(boot, 0.025, axis=0), np.quantile(boot, 0.975, axis=0)


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(np.asarray(y, dtype=np.float64), 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


# -- cells -------------------------------------------------------------------------------------


def cell_path(out_dir: Path, task: TaskSpec, agent: str, seed: int) -> Path:
    return out_dir / "cells" / task.env_id / f"{agent}-seed{seed}.json"


def cell_key(task: TaskSpec, agent: str, seed: int) -> dict[str, Any]:
    """What a cell's result depends on; a stored cell with another key is run again."""
    from dataclasses import asdict

    spec = asdict(task)
    spec.pop("agents", None)
    spec.pop("seeds", None)
    spec["config"] = _agent_settings(task, agent)
    return {"agent": agent, "seed": seed, "task": spec}


def _agent_settings(task: TaskSpec, agent: str) -> dict[str, Any]:
    from benchmarks.peers import PEERS, peer_config

    if agent in REFERENCES or agent == "*":
        return {}
    if agent in PEERS:
        return peer_config(task, agent)
    return task.agent_config(agent)


def distinct_share(completions: list[str]) -> float | None:
    """Distinct completions / completions (1: all different; 1/n: all the same)."""
    return len(set(completions)) / len(completions) if completions else None


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _eval_figures(figures: dict[str, Any], completions: list[str]) -> dict[str, Any]:
    """JSON-able figures; distinct-1/2 are None where completions have no word bigrams (e.g.
    the character tasks' one-word answers), where they would say nothing."""
    out = {k: _finite(v) if isinstance(v, float) else v for k, v in figures.items()}
    if not any(len(c.split()) > 1 for c in completions):
        out["distinct_1"] = out["distinct_2"] = None
    return out


def random_policy_eval(envs: Any, n_episodes: int, seed: int) -> dict[str, Any]:
    """Episodes of a policy uniform over ``action_masks()`` on the test split.

    The first ``ceil(n / num_envs)`` episodes of every slot count (not the first ``n`` to end,
    which would favour short episodes)."""
    from agents.evaluation import distinct_n

    rng = np.random.default_rng(seed)
    envs.reset(seed=int(rng.integers(0, 2**31 - 1)), options={"split": "test"})
    allowed = [np.flatnonzero(m) for m in envs.action_masks()]
    uniform_entropy = float(np.mean([math.log(len(a)) for a in allowed]))
    per_slot = -(-n_episodes // envs.num_envs)
    found: list[list[tuple[dict[str, Any], int]]] = [[] for _ in range(envs.num_envs)]
    steps = np.zeros(envs.num_envs, dtype=int)
    while min(len(f) for f in found) < per_slot:
        actions = np.array([rng.choice(a) for a in allowed])
        _, rewards, terminated, truncated, infos = envs.step(actions)
        steps += 1
        done = np.flatnonzero(terminated | truncated)
        for i in done:
            if len(found[i]) < per_slot:
                score = float(infos["score"][i]) if "score" in infos else float(rewards[i])
                row = {
                    "prompt": str(infos["prompt"][i]),
                    "completion": str(infos["completion"][i]),
                    "score": score,
                }
                found[i].append((row, int(steps[i])))
        steps[done] = -1  # NextStep autoreset: the next step of a finished slot is its reset
    ordered = [found[i][k] for k in range(per_slot) for i in range(envs.num_envs)][:n_episodes]
    rows = [r for r, _ in ordered]
    lengths = [n for _, n in ordered]
    scores = [r["score"] for r in rows]
    return {
        "scores": scores,
        "eval": {
            "n_episodes": len(scores),
            "reward_mean": float(np.mean(scores)),
            "reward_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
            "kl": None,
            "perplexity": None,
            "distinct_1": distinct_n([r["completion"] for r in rows], 1),
            "distinct_2": distinct_n([r["completion"] for r in rows], 2),
            **(
                {}
                if any(len(r["completion"].split()) > 1 for r in rows)
                else {"distinct_1": None, "distinct_2": None}
            ),
            "mean_length": float(np.mean(lengths)),
            "distinct": distinct_share([r["completion"] for r in rows]),
            "entropy": uniform_entropy,
        },
        "samples": rows[:8],
    }


def _rows_figures(
    rows: list[dict[str, Any]], mean_length: float, entropy: float | None
) -> dict[str, Any]:
    """The eval figures of a row without an LMPolicy (a peer): no KL or perplexity."""
    from agents.evaluation import distinct_n

    scores = [r["score"] for r in rows]
    completions = [r["completion"] for r in rows]
    words = any(len(c.split()) > 1 for c in completions)
    return {
        "n_episodes": len(scores),
        "reward_mean": float(np.mean(scores)),
        "reward_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "kl": None,
        "perplexity": None,
        "distinct_1": distinct_n(completions, 1) if words else None,
        "distinct_2": distinct_n(completions, 2) if words else None,
        "mean_length": mean_length,
        "distinct": distinct_share(completions),
        "entropy": _finite(entropy),
    }


def run_cell(task: TaskSpec, agent: str, seed: int, *, progress: bool = False) -> dict[str, Any]:
    """Run one cell and return its result (JSON-able)."""
    import torch

    from agents import evaluate
    from textgym.cli import build_policy, learner_class, make_envs

    t0 = time.perf_counter()
    eval_envs = make_envs(task.env_id, min(task.num_envs, task.eval_episodes), task.env_kwargs)
    result: dict[str, Any] = {
        "agent": agent,
        "seed": seed,
        "env_id": task.env_id,
        "model": task.model,
        "greedy": task.greedy,
    }
    if agent == "random":
        result.update(random_policy_eval(eval_envs, task.eval_episodes, seed))
        result.update(train_seconds=0.0, episodes=0, tokens=0, tokens_per_s=None, curve=[])
        result["wall_seconds"] = time.perf_counter() - t0
        return result

    torch.manual_seed(seed)
    if agent == "sb3-ppo":
        from benchmarks.peers import run_sb3_ppo

        peer = run_sb3_ppo(task, seed, eval_envs, greedy=task.greedy)
        rows = peer.pop("rows")
        figures = _rows_figures(rows, peer.pop("mean_length"), peer.pop("entropy"))
        train_seconds = peer["train_seconds"]
        result.update(
            **peer,
            tokens_per_s=peer["tokens"] / train_seconds if train_seconds > 0 else None,
            scores=[r["score"] for r in rows],
            eval=figures,
            samples=rows[:8],
            wall_seconds=time.perf_counter() - t0,
        )
        return result

    envs = make_envs(task.env_id, task.num_envs, task.env_kwargs)
    policy = build_policy(task.model, envs, seed=seed, precision=task.precision, tiny=task.tiny)
    curve: list[list[float]] = []
    train_seconds, tokens, episodes, iterations = 0.0, 0, 0, 0
    config: dict[str, Any] = {}
    learner = policy
    if agent == "trl-grpo":
        from agents import LMPolicy
        from benchmarks.peers import run_trl_grpo

        # TRL trains the transformers model alone: wrap it without policy-side extras.
        policy = LMPolicy(policy.model, policy.tokenizer, precision=task.precision, seed=seed)
        policy.ensure_reference()  # KL of the evaluation: against the initial model
        learner = policy
        peer = run_trl_grpo(task, seed, envs, policy)
        config, iterations, curve = peer.pop("config"), peer.pop("iterations"), peer.pop("curve")
        episodes, tokens = peer.pop("episodes"), peer.pop("tokens")
        train_seconds = peer.pop("train_seconds")
        result.update(peer)
    elif agent != "untrained":
        # "sft+<learner>": a supervised warm start on the task's references, then the learner.
        options = task.agent_config(agent)
        warm = options.pop("warm_start", {}) if agent.startswith("sft+") else None
        cls = learner_class(agent.removeprefix("sft+"))
        cfg = cls.Config.for_policy(policy, seed=seed, progress=False, **options)
        if warm is not None:
            from agents import WarmStartConfig, warm_start

            t_warm = time.perf_counter()
            history = warm_start(policy, envs, WarmStartConfig(seed=seed, **warm)).history
            result["warm_start"] = {"seconds": time.perf_counter() - t_warm, "history": history}
        learner = cls(policy, envs, cfg)  # after the warm start: its KL reference is the SFT model
        from dataclasses import asdict

        config = {k: v for k, v in asdict(cfg).items() if k not in ("log_dir", "checkpoint_dir")}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=task.episodes,
                desc=f"{task.env_id} {agent} seed {seed}",
                unit="ep",
                leave=False,
            )
        start = time.perf_counter()
        while learner.episodes < task.episodes:
            if task.max_tokens is not None and learner.tokens >= task.max_tokens:
                break
            if task.time_limit is not None and time.perf_counter() - start >= task.time_limit:
                result["stop_reason"] = f"time limit of {task.time_limit:.0f} s"
                break
            learner.learn(iterations=1)
            row = learner.history[-1]
            curve.append([learner.episodes, learner.tokens, row["reward"], row.get("kl", math.nan)])
            if bar is not None:
                bar.update(learner.episodes - bar.n)
                bar.set_postfix(reward=f"{row['reward']:.3f}")
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - start
        tokens, episodes, iterations = learner.tokens, learner.episodes, learner.iteration
    ev = evaluate(
        learner,
        eval_envs,
        task.eval_episodes,
        split="test",
        seed=EVAL_SEED,
        num_samples=task.eval_episodes,
        deterministic=task.greedy,
        with_entropy=True,
    )
    completions = [x["completion"] for x in ev.samples]
    result.update(
        config=config,
        iterations=iterations,
        episodes=episodes,
        tokens=tokens,
        train_seconds=train_seconds,
        tokens_per_s=tokens / train_seconds if train_seconds > 0 else None,
        curve=[[e, t, _finite(r), _finite(k)] for e, t, r, k in curve],
        scores=[s["score"] for s in ev.samples],
        eval={
            **_eval_figures(ev.as_dict(), completions),
            "distinct": distinct_share(completions),
            "entropy": _finite(ev.entropy),
        },
        samples=ev.samples[:8],
        wall_seconds=time.perf_counter() - t0,
    )
    return result


# -- the run -----------------------------------------------------------------------------------


def run_benchmark(
    preset: Preset,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    trl: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run (or finish) every cell of ``preset`` into ``out_dir``, then write ``results.json``,
    ``leaderboard.md`` and one ``curves-<task>.png`` per task; returns the results dict."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if preset.threads:
        torch.set_num_threads(preset.threads)
    from benchmarks.peers import PEERS, missing

    cells = preset.cells()
    started = time.perf_counter()
    ran = skipped = 0
    notes: dict[str, dict[str, str]] = {}  # env id -> peer -> why it has no row
    for k, (task, agent, seed) in enumerate(cells, start=1):
        if agent in PEERS and (why := missing(agent)):
            notes.setdefault(task.env_id, {})[agent] = f"not run: {why}"
            log(f"[{k}/{len(cells)}] {task.env_id} {agent} seed {seed}: skipped, {why}")
            continue
        path = cell_path(out, task, agent, seed)
        key = cell_key(task, agent, seed)
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except json.JSONDecodeError:
                stored = {}
            if stored.get("key") == key:
                skipped += 1
                log(f"[{k}/{len(cells)}] {task.env_id} {agent} seed {seed}: done before, skipped")
                continue
            log(f"[{k}/{len(cells)}] {task.env_id} {agent} seed {seed}: settings changed, rerun")
        try:
            result = run_cell(task, agent, seed, progress=progress)
        except Exception as e:  # a peer's own failure (an API change...) keeps the rest going
            if agent not in PEERS:
                raise
            why = f"failed: {type(e).__name__}: {e}"
            notes.setdefault(task.env_id, {})[agent] = why
            log(f"[{k}/{len(cells)}] {task.env_id} {agent} seed {seed}: {why}")
            continue
        result["key"] = key
        write_json_atomic(path, result)
        ran += 1
        ev = result["eval"]
        log(
            f"[{k}/{len(cells)}] {task.env_id} {agent} seed {seed}: test reward "
            f"{ev['reward_mean']:.4f} ({result['wall_seconds']:.1f} s)"
        )
    trl_result = None
    if preset.trl is not None and trl:
        trl_result = run_trl_cell(preset, out, log=log)
    results = collect(preset, out, trl_result, notes=notes)
    results["run"] = {
        "cells_run": ran,
        "cells_skipped": skipped,
        "seconds": time.perf_counter() - started,
    }
    write_json_atomic(out / "results.json", results)
    plots = plot_curves(results, out)
    (out / "leaderboard.md").write_text(leaderboard_markdown(results, plots))
    log(f"wrote {out / 'results.json'}, {out / 'leaderboard.md'} and {len(plots)} plot(s)")
    return results


def run_trl_cell(preset: Preset, out: Path, log=print) -> dict[str, Any]:
    """The TRL speed comparison as a resumable cell (``cells/trl.json``)."""
    from dataclasses import asdict

    from benchmarks import trl_baseline

    path = out / "cells" / "trl.json"
    key = asdict(preset.trl)
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            log("TRL comparison: done before, skipped")
            return stored
    log("TRL comparison: running")
    result = trl_baseline.compare(preset.trl, log=log)
    result["key"] = key
    write_json_atomic(path, result)
    return result


def not_learned(row: dict[str, Any], refs: list[dict[str, Any]]) -> str | None:
    """Why an agent row did not learn, or None: its test completions collapsed (the share of
    distinct ones below ``COLLAPSED``), or its 95% CI overlaps the untrained or random row's."""
    if row.get("distinct") is not None and row["distinct"] < COLLAPSED:
        return "collapsed"
    lo, hi = row["reward_ci_low"], row["reward_ci_high"]
    for ref in refs:
        if (
            ref["agent"] in REFERENCES
            and lo <= ref["reward_ci_high"]
            and ref["reward_ci_low"] <= hi
        ):
            return f"= {ref['agent']}"
    return None


def collect(
    preset: Preset, out: Path, trl_result: dict | None = None, *, notes: dict | None = None
) -> dict[str, Any]:
    """Read every cell of ``preset`` from ``out`` and aggregate per (task, agent); ``notes``:
    per env id, why a peer row is missing (see :func:`run_benchmark`)."""
    from benchmarks.peers import PEERS, missing

    tasks = []
    for task in preset.tasks:
        agents = task.agents if task.agents is not None else preset.agents
        cells_by_agent: dict[str, list[dict]] = {}
        for t, agent, seed in preset.cells():
            if t is not task:
                continue
            path = cell_path(out, task, agent, seed)
            if path.exists():
                cells_by_agent.setdefault(agent, []).append(json.loads(path.read_text()))
        rows = []
        for agent in [*agents, *REFERENCES]:
            cells = cells_by_agent.get(agent, [])
            if not cells:
                continue
            mean, lo, hi = bootstrap_ci([c["scores"] for c in cells])

            def avg(key: str, cells=cells) -> float | None:
                vals = [c["eval"].get(key) for c in cells]
                vals = [v for v in vals if v is not None and math.isfinite(v)]
                return float(np.mean(vals)) if vals else None

            tps = [c["tokens_per_s"] for c in cells if c.get("tokens_per_s")]
            rows.append(
                {
                    "agent": agent,
                    "seeds": [c["seed"] for c in cells],
                    "reward_mean": mean,
                    "reward_ci_low": lo,
                    "reward_ci_high": hi,
                    "kl": avg("kl"),
                    "perplexity": avg("perplexity"),
                    "distinct_2": avg("distinct_2"),
                    "mean_length": avg("mean_length"),
                    "distinct": avg("distinct"),
                    "entropy": avg("entropy"),
                    "collapsed_seeds": sum(
                        1
                        for c in cells
                        if c["eval"].get("distinct") is not None
                        and c["eval"]["distinct"] < COLLAPSED
                    ),
                    "wall_seconds": float(np.mean([c["wall_seconds"] for c in cells])),
                    "train_seconds": float(np.mean([c["train_seconds"] for c in cells])),
                    "tokens_per_s": float(np.mean(tps)) if tps else None,
                    "episodes": int(np.mean([c["episodes"] for c in cells])),
                    "tokens": int(np.mean([c["tokens"] for c in cells])),
                }
            )
        refs = [r for r in rows if r["agent"] in REFERENCES]
        for r in rows:
            r["not_learned"] = None if r["agent"] in REFERENCES else not_learned(r, refs)
        task_notes = {  # "not run" is moot where cells of an earlier run are there
            a: why
            for a, why in (notes or {}).get(task.env_id, {}).items()
            if not (why.startswith("not run") and a in cells_by_agent)
        }
        for agent in agents:
            if agent in PEERS and agent not in cells_by_agent and agent not in task_notes:
                why = missing(agent)
                task_notes[agent] = f"not run: {why}" if why else "not run"
        cells_out = {a: cs for a, cs in cells_by_agent.items()}
        tasks.append(
            {
                "env_id": task.env_id,
                "model": task.model,
                "rows": rows,
                "cells": cells_out,
                "spec": cell_key(task, "*", 0)["task"],
                "notes": task_notes,
            }
        )
    return {
        "preset": preset.to_dict(),
        "versions": package_versions(),
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "eval_seed": EVAL_SEED,
        "tasks": tasks,
        "trl": trl_result,
    }


# -- outputs -----------------------------------------------------------------------------------


def plot_curves(results: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per task: training reward vs episodes, mean over seeds with a 95% bootstrap band
    (smoothed), every agent on one plot; the reference rows as dashed lines (test reward)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for task in results["tasks"]:
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        drew = False
        for agent, cells in task["cells"].items():
            if agent in REFERENCES:
                continue
            curves = [c["curve"] for c in cells if c["curve"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            x = np.array([row[0] for row in curves[0][:n]], dtype=float)
            window = max(1, n // 15)
            ys = [smooth(np.array([r[2] for r in c[:n]], dtype=float), window) for c in curves]
            mean, lo, hi = curve_band(ys)
            (line,) = ax.plot(x, mean, label=f"{agent} (n={len(curves)})")
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
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, "
        f"GPU: {m['gpu'] or 'none'}; torch {v['torch']}, transformers {v['transformers']}, "
        f"gymnasium {v['gymnasium']}; {results['date']}.",
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
        if spec.get("max_tokens"):
            budget += f", at most {spec['max_tokens']:,} tokens"
        seeds_per_row = ", ".join(f"{r['agent']} {len(r['seeds'])}" for r in task["rows"])
        lines += [
            "",
            f"## {task['env_id']} ({task['model']})",
            "",
            f"Budget per agent: {budget}; evaluation: {spec['eval_episodes']} test episodes "
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
        for agent, why in (task.get("notes") or {}).items():
            lines += ["", f"- {agent}: {why}"]
        png = f"curves-{task['env_id']}.png"
        if plots is None or any(p.name == png for p in plots):
            lines += ["", f"![{task['env_id']} learning curves]({png})"]
    trl = results.get("trl")
    if trl is not None:
        lines += ["", "## Speed vs TRL's GRPOTrainer", "", trl_markdown(trl)]
    return "\n".join(lines) + "\n"


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
        "| s / iteration |",
        "|---|---|---|---|---|",
    ]
    base = trl["trainers"].get("trl_grpo", {}).get("samples_per_s")
    for name, r in trl["trainers"].items():
        ratio = r["samples_per_s"] / base if base and name != "trl_grpo" else None
        lines.append(
            f"| {name} | {_fmt(r['samples_per_s'], 2)} | "
            f"{_fmt(ratio, 2) + 'x' if ratio else '1 (baseline)' if name == 'trl_grpo' else 'n/a'}"
            f" | {_fmt(r['reward_mean'])} | {_fmt(r['seconds_per_iteration'], 1)} |"
        )
    return "\n".join(lines)

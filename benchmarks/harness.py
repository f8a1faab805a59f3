"""The quality benchmark: agents x tasks x seeds under one budget, with reference rows.

A *cell* is (task, agent, seed). Agent cells train a fresh policy for the task's budget and then
evaluate it on the test split; the reference rows are ``untrained`` (the initial model, evaluated
the same way) and ``random`` (tokens uniform over ``action_masks()``). Peer rows (``sb3-ppo``,
``trl-grpo``; :mod:`benchmarks.peers`) train the best-known implementation of the same algorithm
under the same budget and are evaluated the same way; a peer whose package is missing is skipped
with a note. Every cell also records ``distinct`` (the share of distinct completions among all
its test completions) and ``entropy`` (the policy's mean per-token entropy over them), and the
leaderboard marks a row *not learned* when its completions collapsed or its score is
indistinguishable from the untrained/random rows (:func:`benchmarks.stats.not_learned`). Every
cell writes ``cells/<task>/<agent>-seed<k>.json`` atomically when it is done, so an interrupted
benchmark re-run with the same output folder only runs the cells it has not finished (a cell
whose settings changed is run again).

Outputs in the output folder: ``results.json`` (preset, package versions, machine, every cell
with its per-iteration training curve), and from it (:mod:`benchmarks.report`) ``leaderboard.md``
and ``curves-<task>.png``. The statistics (bootstrap CIs, not-learned marks) are in
:mod:`benchmarks.stats`.

    results = run_benchmark(get_preset("quick"), "runs/bench-quick")
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agents import LMPolicy, WarmStartConfig, evaluate, warm_start
from agents.cli import EVAL_SEED, build_policy, learner_class, make_envs
from agents.evaluation import distinct_n, distinct_share
from benchmarks import peers, trl_baseline
from benchmarks.presets import Preset, TaskSpec
from benchmarks.report import leaderboard_markdown, plot_curves
from benchmarks.stats import (
    REFERENCES,
    bootstrap_difference_ci,
    finite,
    machine_info,
    not_learned,
    summarize,
)

# -- versions --------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for name in ("textgym", "torch", "transformers", "gymnasium", "numpy", "trl", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- cells -------------------------------------------------------------------------------------


def cell_path(out_dir: Path, task: TaskSpec, agent: str, seed: int) -> Path:
    return out_dir / "cells" / task.env_id / f"{agent}-seed{seed}.json"


def cell_key(task: TaskSpec, agent: str, seed: int) -> dict[str, Any]:
    """What a cell's result depends on; a stored cell with another key is run again."""
    spec = asdict(task)
    spec.pop("agents", None)
    spec.pop("seeds", None)
    spec["config"] = _agent_settings(task, agent)
    return {"agent": agent, "seed": seed, "task": spec}


def _agent_settings(task: TaskSpec, agent: str) -> dict[str, Any]:
    if agent in REFERENCES or agent == "*":
        return {}
    if agent in peers.PEERS:
        return peers.peer_config(task, agent)
    return task.agent_config(agent)


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


def _eval_figures(figures: dict[str, Any], completions: list[str]) -> dict[str, Any]:
    """JSON-able figures; distinct-1/2 are None where completions have no word bigrams (e.g.
    the character tasks' one-word answers), where they would say nothing."""
    out = {k: finite(v) if isinstance(v, float) else v for k, v in figures.items()}
    if not any(len(c.split()) > 1 for c in completions):
        out["distinct_1"] = out["distinct_2"] = None
    return out


def random_policy_eval(envs: Any, n_episodes: int, seed: int) -> dict[str, Any]:
    """Episodes of a policy uniform over ``action_masks()`` on the test split.

    The first ``ceil(n / num_envs)`` episodes of every slot count (not the first ``n`` to end,
    which would favour short episodes)."""
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
        "entropy": finite(entropy),
    }


def run_cell(task: TaskSpec, agent: str, seed: int, *, progress: bool = False) -> dict[str, Any]:
    """Run one cell and return its result (JSON-able)."""
    import torch

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
        peer = peers.run_sb3_ppo(task, seed, eval_envs, greedy=task.greedy)
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
        # TRL trains the transformers model alone: wrap it without policy-side extras.
        policy = LMPolicy(policy.model, policy.tokenizer, precision=task.precision, seed=seed)
        policy.ensure_reference()  # KL of the evaluation: against the initial model
        learner = policy
        peer = peers.run_trl_grpo(task, seed, envs, policy)
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
            t_warm = time.perf_counter()
            history = warm_start(policy, envs, WarmStartConfig(seed=seed, **warm)).history
            result["warm_start"] = {"seconds": time.perf_counter() - t_warm, "history": history}
        learner = cls(policy, envs, cfg)  # after the warm start: its KL reference is the SFT model
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
        curve=[[e, t, finite(r), finite(k)] for e, t, r, k in curve],
        scores=[s["score"] for s in ev.samples],
        eval={
            **_eval_figures(ev.as_dict(), completions),
            "distinct": distinct_share(completions),
            "entropy": finite(ev.entropy),
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
    cells = preset.cells()
    started = time.perf_counter()
    ran = skipped = 0
    notes: dict[str, dict[str, str]] = {}  # env id -> peer -> why it has no row
    for k, (task, agent, seed) in enumerate(cells, start=1):
        if agent in peers.PEERS and (why := peers.missing(agent)):
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
            if agent not in peers.PEERS:
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


def peer_comparisons(cells_by_agent: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """For each peer row whose algorithm is also ours (:data:`peers.COUNTERPART`): our row's
    mean test reward minus the peer's, with the 95% CI of the difference
    (:func:`~benchmarks.stats.bootstrap_difference_ci`, paired over test prompts)."""
    rows = []
    for peer, ours in peers.COUNTERPART.items():
        if cells_by_agent.get(peer) and cells_by_agent.get(ours):
            diff, lo, hi = bootstrap_difference_ci(
                [c["scores"] for c in cells_by_agent[ours]],
                [c["scores"] for c in cells_by_agent[peer]],
            )
            rows.append(
                {"agent": ours, "peer": peer, "difference": diff, "ci_low": lo, "ci_high": hi}
            )
    return rows


def collect(
    preset: Preset, out: Path, trl_result: dict | None = None, *, notes: dict | None = None
) -> dict[str, Any]:
    """Read every cell of ``preset`` from ``out`` and aggregate per (task, agent); ``notes``:
    per env id, why a peer row is missing (see :func:`run_benchmark`)."""
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
        rows = [
            summarize(agent, cells_by_agent[agent])
            for agent in [*agents, *REFERENCES]
            if cells_by_agent.get(agent)
        ]
        refs = [r for r in rows if r["agent"] in REFERENCES]
        for r in rows:
            r["not_learned"] = None if r["agent"] in REFERENCES else not_learned(r, refs)
        task_notes = {  # "not run" is moot where cells of an earlier run are there
            a: why
            for a, why in (notes or {}).get(task.env_id, {}).items()
            if not (why.startswith("not run") and a in cells_by_agent)
        }
        for agent in agents:
            if agent in peers.PEERS and agent not in cells_by_agent and agent not in task_notes:
                why = peers.missing(agent)
                task_notes[agent] = f"not run: {why}" if why else "not run"
        comparisons = peer_comparisons(cells_by_agent)
        cells_out = {a: cs for a, cs in cells_by_agent.items()}
        tasks.append(
            {
                "env_id": task.env_id,
                "model": task.model,
                "rows": rows,
                "cells": cells_out,
                "spec": cell_key(task, "*", 0)["task"],
                "notes": task_notes,
                "comparisons": comparisons,
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

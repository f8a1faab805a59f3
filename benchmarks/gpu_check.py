"""The GPU paths in one command: what a GPU machine should run once and record.

    python -m benchmarks.gpu_check --json gpu.json      # one GPU, SmolLM2-135M: ~6 minutes
    python -m benchmarks.gpu_check --dry-run            # CPU, tiny sizes: seconds (tested)

Sections, each timed and reported on its own (a failing one is recorded with its error and the
rest still run; a section that would start after ``--budget`` seconds is skipped, so the command
stays under 8 minutes):

1. ``bf16_gap``: SmolLM2 under bf16 autocast (the CUDA default), PPO's first update: mean and max
   |acting - update| log-prob per token (``logprob_gap``), the first-update ratios (must be 1 up
   to 1e-3: old log-probs are rescored by the update's own forward) and the KL at initialisation
   (must be 0: policy and reference are scored by the same forward);
2. ``rollout_vs_generate``: episodes through the env + LMPolicy (static KV cache, compiled step)
   vs ``model.generate``, tokens/s and their ratio (:mod:`benchmarks.rollout_vs_generate`);
3. ``gpu_paths``: dynamic vs static cache, eager vs ``torch.compile`` (:mod:`benchmarks.gpu_paths`);
4. ``logprob_memory``: peak memory of the chunked log-prob path vs naive ``log_softmax``
   (:mod:`benchmarks.logprob_memory`);
5. ``trl``: our GRPO vs TRL's GRPOTrainer, samples/s in alternating rounds, bf16 on both sides
   (:mod:`benchmarks.trl_baseline`);
6. ``engines``: rollout tokens/s of the per-token engine and the vLLM engine, N = 16 and 64
   (:mod:`benchmarks.engine_throughput`; needs ``vllm``: ``pip install 'textgym[vllm]'``);
7. ``trl_vllm``: section 5 with TRL's ``GRPOConfig(use_vllm=True, vllm_mode="colocate")``.

CUDA graphs are not used explicitly (``torch.compile``'s default mode); the static cache keeps
the compiled step's graph. ``--dry-run`` runs every section on the CPU with a tiny model (or
SmolLM2 at tiny sizes where a section needs the real tokenizer and weights), to check that the
script works where no GPU is at hand; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch


def first_update_figures(agent: Any, rollout: Any) -> dict[str, float]:
    """The first steps of a PPO update (agents.update): the batch and its recomputed old
    log-probs, then the first epoch's minibatches scored as the update scores them. Returns the
    acting-vs-recomputed log-prob gap, the first step's ratio range and the KL at the start."""
    from agents.update import (
        epoch_orders,
        forward,
        minibatch_size_of,
        minibatches,
        recompute,
        rollout_batch,
    )

    c, policy = agent.config, agent.policy
    batch = rollout_batch(rollout, policy.device)
    n = rollout.num_envs
    size = minibatch_size_of(n, c.minibatch_size)
    orders = epoch_orders(agent.rng, n, c.minibatch_size, c.update_epochs)
    metrics = recompute(
        policy,
        batch,
        rollout.prompt_len,
        orders[0],
        size,
        reference=agent.uses_reference(),
        kl_estimator=c.kl_estimator,
    )
    mask = batch["mask"]
    gap = (batch["acting_logprobs"] - batch["old_logprobs"]).abs()[mask]
    lo, hi = math.inf, -math.inf
    with torch.no_grad():
        for _, mb, prompt_len in minibatches(batch, rollout.prompt_len, orders[0], size):
            ratio = torch.exp(forward(policy, mb, prompt_len).logprobs - mb["old_logprobs"])
            ratio = ratio[mb["mask"]]
            lo, hi = min(lo, float(ratio.min())), max(hi, float(ratio.max()))
    return {
        "acting_vs_update_mean": float(gap.mean()),
        "acting_vs_update_max": float(gap.max()),
        "first_update_ratio_min": lo,
        "first_update_ratio_max": hi,
        "kl_at_init": metrics["kl"],
        "logged_gap": metrics["logprob_gap"],
    }


def bf16_gap(model: str, num_envs: int, horizon: int, device: str) -> dict[str, Any]:
    """PPO's first update under bf16: acting vs update log-probs, ratios, KL at init."""
    import gymnasium as gym

    import textgym  # noqa: F401
    from agents import PPO, LMPolicy
    from agents.cli import build_policy
    from agents.rollout import collect_rollout

    envs = gym.make_vec("TextGen-v0", num_envs=num_envs, max_new_tokens=horizon)
    if model == "tiny":
        policy = build_policy("tiny", envs, precision="bf16", tiny={"n_layer": 2, "n_embd": 64})
        policy = policy.to(device)
    else:
        policy = LMPolicy.from_pretrained(model, device=device, precision="bf16")
    agent = PPO(policy, envs, PPO.Config(progress=False, kl_coef=0.05))
    rollout = collect_rollout(
        policy,
        envs,
        seeds=list(range(num_envs)),
        generator=torch.Generator(policy.device).manual_seed(0),
    )
    figures = first_update_figures(agent, rollout)
    return {
        "model": model,
        "num_envs": num_envs,
        "max_new_tokens": horizon,
        **figures,
    }


def trl_compare(spec: Any, precision: str, device: str, use_vllm: bool = False) -> dict[str, Any]:
    from benchmarks import trl_baseline

    return trl_baseline.compare(
        spec, log=lambda *a: None, precision=precision, device=device, use_vllm=use_vllm
    )


def engines(model: str, sizes: list[int], horizon: int, repeats: int) -> dict[str, Any]:
    """Rollout tokens/s per engine (:mod:`benchmarks.engine_throughput`), or why not run."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        return {"error": "vllm is not installed: pip install 'textgym[vllm]' (a CPU: vllm-venv)"}
    from benchmarks import engine_throughput

    sizes_args = [str(n) for n in sizes]
    return engine_throughput.main(
        ["--model", model, "--num-envs", *sizes_args, "--max-new-tokens", str(horizon)]
        + ["--repeats", str(repeats)]
    )


def _quiet(fn: Any, *args: Any) -> tuple[Any, str]:
    """``fn(*args)`` with its stdout captured (the sub-benchmarks print Markdown tables)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fn(*args)
    return result, out.getvalue()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny sizes: check that every section runs (figures mean nothing)",
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument(
        "--budget",
        type=float,
        default=420.0,
        help="seconds; sections that would start later are skipped",
    )
    p.add_argument("--only", nargs="*", default=None, help="run only these sections")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from benchmarks import gpu_paths, logprob_memory, rollout_vs_generate
    from benchmarks.presets import TRLSpec
    from benchmarks.stats import machine_info

    dry = args.dry_run
    device = "cpu" if dry or not torch.cuda.is_available() else "cuda"
    if dry:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    env = {"device": device, "dry_run": dry, **machine_info()}
    model = args.model
    if dry:
        sections = {
            "bf16_gap": lambda: _quiet(bf16_gap, "tiny", 4, 8, device),
            "rollout_vs_generate": lambda: _quiet(
                rollout_vs_generate.main,
                [
                    "--model",
                    model,
                    "--num-envs",
                    "2",
                    "--max-new-tokens",
                    "4",
                    "--repeats",
                    "1",
                    "--precision",
                    "bf16",
                ],
            ),
            "gpu_paths": lambda: _quiet(
                gpu_paths.main,
                [
                    "--model",
                    "tiny",
                    "--num-envs",
                    "2",
                    "--max-new-tokens",
                    "4",
                    "--repeats",
                    "1",
                    "--backend",
                    "eager",
                ],
            ),
            "logprob_memory": lambda: _quiet(
                logprob_memory.main,
                [
                    "--batch",
                    "2",
                    "--length",
                    "8",
                    "--vocab",
                    "4096",
                    "--hidden",
                    "64",
                    "--device",
                    "cpu",
                ],
            ),
            "trl": lambda: _quiet(
                trl_compare,
                replace(
                    TRLSpec(),
                    model="tiny",
                    prompts=2,
                    group_size=2,
                    max_new_tokens=4,
                    iterations=1,
                    warmup=1,
                    learners=["grpo"],
                ),
                "fp32",
                "cpu",
            ),
            "engines": lambda: _quiet(engines, model, [2], 4, 1),
            "trl_vllm": lambda: _quiet(
                trl_compare,
                replace(
                    TRLSpec(),
                    model="tiny",
                    prompts=2,
                    group_size=2,
                    max_new_tokens=4,
                    iterations=1,
                    warmup=1,
                    learners=["grpo"],
                ),
                "fp32",
                "cpu",
                True,
            ),
        }
    else:
        sections = {
            "bf16_gap": lambda: _quiet(bf16_gap, model, 16, 32, device),
            "rollout_vs_generate": lambda: _quiet(
                rollout_vs_generate.main,
                ["--model", model, "--repeats", "5", "--precision", "auto"],
            ),
            "gpu_paths": lambda: _quiet(gpu_paths.main, ["--model", model, "--repeats", "3"]),
            "logprob_memory": lambda: _quiet(
                logprob_memory.main, ["--batch", "16", "--length", "256", "--device", device]
            ),
            "trl": lambda: _quiet(
                trl_compare,
                replace(
                    TRLSpec(),
                    model=model,
                    prompts=8,
                    group_size=8,
                    max_new_tokens=64,
                    iterations=4,
                    warmup=1,
                    learners=["grpo"],
                ),
                "bf16",
                device,
            ),
            "engines": lambda: _quiet(engines, model, [16, 64], 128, 3),
            "trl_vllm": lambda: _quiet(
                trl_compare,
                replace(
                    TRLSpec(),
                    model=model,
                    prompts=8,
                    group_size=8,
                    max_new_tokens=64,
                    iterations=4,
                    warmup=1,
                    learners=["grpo"],
                ),
                "bf16",
                device,
                True,
            ),
        }
    if args.only:
        sections = {k: v for k, v in sections.items() if k in args.only}
    report: dict[str, Any] = {"environment": env, "sections": {}}
    start = time.perf_counter()
    for name, run in sections.items():
        elapsed = time.perf_counter() - start
        if elapsed > args.budget:
            report["sections"][name] = {"skipped": f"over the {args.budget:.0f} s budget"}
            print(f"[{name}] skipped: {elapsed:.0f} s elapsed", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            result, printed = run()
            entry = {
                "ok": True,
                "seconds": time.perf_counter() - t0,
                **_as_dict(result),
                "printed": printed,
            }
        except Exception as e:  # record it, keep the other sections
            entry = {
                "ok": False,
                "seconds": time.perf_counter() - t0,
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        report["sections"][name] = entry
        print(
            f"[{name}] {'ok' if entry['ok'] else 'FAILED'} in {entry['seconds']:.1f} s: "
            f"{_headline(name, entry)}",
            flush=True,
        )
    report["seconds"] = time.perf_counter() - start
    print(json.dumps({"environment": env, "seconds": round(report["seconds"], 1)}))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return report


def _as_dict(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else {"result": result}


def _headline(name: str, entry: dict[str, Any]) -> str:
    """One line of the figures that matter, per section."""
    if not entry["ok"]:
        return entry["error"]
    try:
        if name == "bf16_gap":
            return (
                f"|acting - update| log-prob mean {entry['acting_vs_update_mean']:.2e}, "
                f"max {entry['acting_vs_update_max']:.2e}; first-update ratios "
                f"{entry['first_update_ratio_min']:.6f}..{entry['first_update_ratio_max']:.6f}; "
                f"KL at init {entry['kl_at_init']:.2e}"
            )
        if name == "rollout_vs_generate":
            r = entry
            return (
                f"env {r['env_tokens_per_s']:,.0f} tok/s, generate "
                f"{r['generate_tokens_per_s']:,.0f} tok/s, ratio {r['ratio']:.3f}"
            )
        if name == "gpu_paths":
            return "; ".join(
                f"{r['kv_cache']}/{r['compile']}: {r['rollout_tokens_per_s']:,.0f} tok/s, "
                f"update {r['update_ms']:.0f} ms"
                for r in entry["result"]
            )
        if name == "logprob_memory":
            return "; ".join(
                f"{mode}: {m['ratio']:.3f}x naive" for mode, m in entry["modes"].items()
            )
        if name == "engines":
            if entry.get("error"):
                return f"not run: {entry['error']}"
            return "; ".join(
                f"{r['engine']} N={r['num_envs']}: {r['tokens_per_second']:,.0f} tok/s"
                for r in entry["rows"]
            )
        if name in ("trl", "trl_vllm"):
            if entry.get("error"):
                return f"not run: {entry['error']}"
            t = entry["trainers"]
            return "; ".join(f"{k}: {v['samples_per_s']:.2f} samples/s" for k, v in t.items()) + (
                "; ratio " + ", ".join(f"{k} {v:.2f}x" for k, v in entry["ratios"].items())
            )
    except (KeyError, TypeError) as e:
        return f"(no headline: {e!r})"
    return ""


if __name__ == "__main__":
    main()
    sys.exit(0)

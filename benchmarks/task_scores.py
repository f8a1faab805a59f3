"""Reference scores of every registered task: a random policy, SmolLM2-135M zero-shot, and
SmolLM2-135M after a warm start and a short RL run.

For each id, the mean test-split reward over ``--episodes`` episodes (prompts drawn with
``reset(seed=0)`` from the test split, with replacement) of

* a random policy: tokens drawn uniformly among those ``action_masks()`` allows;
* SmolLM2-135M-Instruct zero-shot, greedy: ``model.generate(do_sample=False)`` on exactly the
  environment's prompt encoding (its left-padded prompt ids, no chat template) with the
  environment's ``max_new_tokens``; the generated tokens are then stepped through the
  environment, so EOS, stop strings and scoring are the environment's own. Character-level ids
  get "n/a" (SmolLM2 does not use the character vocabulary).

``--after-rl`` gives the third column instead, for ids with references (the procedural ones):
per id, :mod:`benchmarks.verifiable` warm-starts SmolLM2-135M on ``--warm-start-examples`` train
references (1 epoch), evaluates it, trains GRPO for ``--rl-minutes`` (groups of 8, flat groups
dropped) and evaluates again on the same test episodes; the table has the success rate (the
checker's "correct" share) greedy and sampled, after the warm start and after GRPO.

Prints a Markdown table (and writes JSON with ``--json``)::

    python -m benchmarks.task_scores                     # all ids, 64 episodes each
    python -m benchmarks.task_scores --ids TextGen-QA-v0 --episodes 16 --no-lm
    python -m benchmarks.task_scores --after-rl --ids TextGen-WordSorting-Easy-v0 --rl-minutes 1
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import textgym
from benchmarks.stats import token_budget


def _first_scores(envs, actions_fn, n: int) -> np.ndarray:
    """Step until every slot has finished one episode; returns each slot's first score and,
    for a task whose checker labels answers (``info["outcome"]``), whether it was correct
    (NaN where the task has no labels)."""
    scores, correct = np.full(n, np.nan), np.full(n, np.nan)
    obs, _ = envs.reset(seed=0)
    t = 0
    while np.isnan(scores).any():
        obs, _, terminated, truncated, infos = envs.step(actions_fn(obs, t))
        done = terminated | truncated
        first = done & np.isnan(scores)
        if first.any():
            scores[first] = np.asarray(infos["score"], dtype=np.float64)[first]
            if "outcome" in infos:
                correct[first] = (np.asarray(infos["outcome"]) == "correct")[first]
        t += 1
    return np.stack([scores, correct])


def _label(results: np.ndarray) -> str:
    """``"0.412"`` (mean reward), or ``"0.412 (31% correct)"`` for tasks that label answers."""
    scores, correct = results
    text = f"{scores.mean():.3f}"
    return text if np.isnan(correct).all() else f"{text} ({100 * correct.mean():.0f}% correct)"


def random_score(env_id: str, n: int, seed: int = 0) -> str:
    envs = gym.make_vec(env_id, num_envs=n, split="test")
    mask = envs.unwrapped.action_masks()[0]
    allowed = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)
    return _label(_first_scores(envs, lambda obs, t: rng.choice(allowed, size=n), n))


def lm_score(env_id: str, n: int, model, batch_size: int = 32) -> str:
    envs = gym.make_vec(env_id, num_envs=n, split="test")
    prompt_len, max_new = token_budget(envs.single_observation_space)
    obs, _ = envs.reset(seed=0)
    pad_id = int(obs["input_ids"][0, prompt_len])  # right after reset the completion is padding
    tok_eos = envs.unwrapped.tokenizer.eos_token_id
    generated = []
    with torch.no_grad():
        for b in range(0, n, batch_size):
            ids = torch.as_tensor(obs["input_ids"][b : b + batch_size, :prompt_len])
            mask = torch.as_tensor(obs["attention_mask"][b : b + batch_size, :prompt_len])
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=tok_eos,
                pad_token_id=pad_id,
            )[:, prompt_len:]
            full = torch.full((len(ids), max_new), tok_eos, dtype=torch.long)
            full[:, : out.shape[1]] = out
            generated.append(full.numpy())
    tokens = np.concatenate(generated)
    # Same prompts again (same seed), then the generated tokens go through the environment.
    return _label(_first_scores(envs, lambda obs, t: tokens[:, min(t, tokens.shape[1] - 1)], n))


def after_rl_row(env_id: str, args: argparse.Namespace) -> dict:
    """SmolLM2-135M on ``env_id`` after a warm start, then after a short GRPO run."""
    from benchmarks import verifiable

    result = verifiable.main(
        ["--env", env_id, "--warm-start-epochs", "1", "--no-untrained", "--seed", "0"]
        + ["--warm-start-examples", str(args.warm_start_examples), "--samples", "2"]
        + ["--minutes", str(args.rl_minutes), "--eval-episodes", str(args.episodes)]
        + ["--threads", str(args.threads)]
    )

    def success(stage: str, mode: str) -> str:
        figures = result[stage][mode]
        if "success_rate" not in figures:  # a task without outcome labels: the mean reward
            return f"{figures['reward_mean']:.3f}"
        return f"{100 * figures['success_rate']:.0f}%"

    return {
        "id": env_id,
        "warm start (greedy)": success("after_warm_start", "greedy"),
        "+ GRPO (greedy)": success("after", "greedy"),
        "warm start (sampled)": success("after_warm_start", "sampled"),
        "+ GRPO (sampled)": success("after", "sampled"),
        "GRPO episodes": result["train"]["episodes"],
        "seconds": round(result["total_seconds"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", nargs="*", default=None, help="default: every registered id")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--no-lm", action="store_true", help="skip the SmolLM2 column")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--after-rl", action="store_true", help="SmolLM2 after a warm start and a short GRPO run"
    )
    parser.add_argument("--rl-minutes", type=float, default=1.0, help="--after-rl: GRPO time")
    parser.add_argument("--warm-start-examples", type=int, default=128, help="--after-rl")
    parser.add_argument("--threads", type=int, default=1, help="--after-rl: torch threads")
    args = parser.parse_args()
    ids = args.ids or textgym.registered_ids()
    if args.after_rl:
        rows = [after_rl_row(env_id, args) for env_id in ids]
        print_table(rows, args.json, args.episodes)
        return
    model = None
    if not args.no_lm:
        from textgym.models import load_lm

        torch.manual_seed(0)
        model, _ = load_lm("smollm2-135m", device="cpu")
    rows = []
    for env_id in ids:
        start = time.time()
        env = gym.make(env_id).unwrapped
        prompt_len, max_new = token_budget(env.observation_space)
        sizes = f"{len(env.prompts['train'])}/{len(env.prompts['test'])}"
        rand = random_score(env_id, args.episodes)
        char = type(env.tokenizer).__name__ == "CharTokenizer"
        if model is None:
            lm = "not run"
        elif char:
            lm = "n/a (char vocabulary)"
        else:
            lm = lm_score(env_id, args.episodes, model)
        rows.append(
            {
                "id": env_id,
                "data (train/test)": sizes,
                "reward": reward_label(env.prompts.name),
                "token budget (prompt/new)": f"{prompt_len}/{max_new}",
                "random": rand,
                "SmolLM2-135M zero-shot (greedy)": lm,
                "seconds": round(time.time() - start, 1),
            }
        )
        print(f"{env_id}: random {rand}, SmolLM2 {lm} ({rows[-1]['seconds']} s)", flush=True)
    print_table(rows, args.json, args.episodes)


def print_table(rows: list[dict], json_path: str | None, episodes: int) -> None:
    """The rows as a Markdown table (without their seconds); also as JSON to ``json_path``."""
    columns = [c for c in rows[0] if c != "seconds"]
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"episodes": episodes, "rows": rows}, f, indent=2)


_REWARD_LABELS = {
    "reviews": "VADER compound [-1, 1]",
    "sentiment": "VADER compound [-1, 1]",
    "arithmetic": "exact number 0/1",
    "copy": "per-position accuracy [0, 1]",
    "reverse": "per-position accuracy [0, 1]",
    "sort": "per-position accuracy [0, 1]",
    "keywords": "0.8 coverage + 0.2 fluency [0, 1]",
    "translate": "chrF / 100 [0, 1]",
    "summarize": "ROUGE-L F1 [0, 1]",
    "qa": "SQuAD token F1 [0, 1]",
}


def reward_label(task: str) -> str:
    """How ``task`` (a built-in task name; its prompt set carries the name) scores a completion."""
    return _REWARD_LABELS.get(task, task)


if __name__ == "__main__":
    main()

"""Random-policy rollout of TextGen-v0: prompts, completions and rewards.

    python -m textgym.demo [--episodes 8] [--seed 0]

A random policy picks uniformly among the tokens ``action_masks()`` allows, so the
completions are gibberish and the rewards hover around zero: the baseline any learner must beat.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import textgym  # noqa: F401  (registers the environments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    envs = gym.make_vec("TextGen-v0", num_envs=args.episodes)
    print(
        f"TextGen-v0 ready in {time.perf_counter() - start:.1f}s: {type(envs).__name__}, "
        f"{envs.num_envs} envs, action space {envs.single_action_space}"
    )
    allowed = np.flatnonzero(envs.action_masks()[0])
    rng = np.random.default_rng(args.seed)
    envs.reset(seed=args.seed)
    finished: dict[int, tuple[str, str, float]] = {}
    while len(finished) < envs.num_envs:
        actions = rng.choice(allowed, size=envs.num_envs)
        _, rewards, terminated, truncated, infos = envs.step(actions)
        for i in np.flatnonzero((terminated | truncated) & infos.get("_completion", False)):
            finished.setdefault(int(i), (infos["prompt"][i], infos["completion"][i], rewards[i]))
    for i in sorted(finished):
        prompt, completion, reward = finished[i]
        print(f"\n[{i}] reward {reward:+.3f}\n  prompt:     {prompt}\n  completion: {completion!r}")
    mean = np.mean([r for _, _, r in finished.values()])
    print(f"\nmean reward of the random policy over {len(finished)} episodes: {mean:+.3f}")


if __name__ == "__main__":
    main()

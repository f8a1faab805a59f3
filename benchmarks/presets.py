"""Benchmark presets: which agents, tasks, seeds and budgets a quality benchmark runs.

* ``tiny``: seconds; for the tests (tiny model, 1 seed, 2 agents and SB3 PPO, TextGen-Copy-v0).
* ``quick``: about two hours on a 2-core CPU: the character tasks (Copy, Reverse) with a tiny LM
  at 60,000 token-steps per cell, all agents and SB3 PPO x 3 seeds (about 35 minutes), and
  SmolLM2-135M on TextGen-v0 at equal wall time, 180 s of training per cell (PPO, GRPO and TRL's
  GRPOTrainer x 8 seeds, about 4 minutes a cell: enough seeds to tell GRPO and TRL's apart if
  they differ), and the TRL speed comparison when ``trl`` is installed.
* ``full``: sized for one GPU: more tasks, seeds and budget, SmolLM2-135M on the language tasks.
* ``nlpo``: NLPO-style masking vs plain PPO on TextGen-v0 with SmolLM2-135M, same seed and
  budget (23 minutes measured on a 2-core CPU, 1 thread).
* ``peers``: our PPO against SB3's PPO on Copy and Reverse, each side with its best setting of
  a sweep of the same size on that task (:data:`SWEEPS`, ``python -m benchmarks.sweep``), every
  row on the dense reward, 60,000 token-steps per cell, 3 seeds (22 minutes of cells on a
  2-core CPU under load).

Every agent of a task gets the same budget: ``episodes`` training episodes (``iterations x
num_envs``), optionally capped at ``max_tokens`` generated tokens, and is then evaluated on the
same ``eval_episodes`` test prompts (same seed), greedily unless ``greedy=False``.

Peers (:mod:`benchmarks.peers`) are agent names too: ``sb3-ppo`` (Stable-Baselines3 PPO with the
token extractor; small vocabularies) and ``trl-grpo`` (TRL's GRPOTrainer with our GRPO's settings;
language models); their settings go under ``config["sb3-ppo"]`` / ``config["trl-grpo"]`` (the
``"*"`` entry, our learners' shared settings, does not apply to SB3).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from agents import LEARNERS

# The learners a preset runs unless it says otherwise: all but NLPO, which the nlpo preset
# compares with PPO (and the full preset runs on TextGen-v0).
DEFAULT_AGENTS = tuple(name for name in LEARNERS if name != "nlpo")


@dataclass
class TaskSpec:
    """One task of a benchmark and the budget every agent gets on it.

    Attributes:
        env_id: a registered textgym id.
        model: ``"tiny"`` (a seeded random tiny LM sized to the vocabulary) or a ``load_lm`` name.
        agents: the agents run on this task (None: the preset's).
        seeds: the seeds run on this task (None: the preset's).
        num_envs: episodes per iteration (the batch).
        episodes: training episodes per cell.
        max_tokens: also stop once this many completion tokens were generated (None: no cap).
        eval_episodes: test-split episodes of the final evaluation.
        env_kwargs: extra ``gym.make_vec`` arguments.
        tiny: ``tiny_lm`` size for ``model="tiny"``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        config: learner config overrides for every agent (``"*"``) and per agent name.
        time_limit: seconds of training per cell (None: none). With ``episodes`` set out of
            reach it makes the agents' budget equal wall time (the SmolLM2 cells: a faster
            learner gets more updates, as it would in practice).
        greedy: evaluate with greedy decoding (deterministic actions; the leaderboard's metric)
            instead of sampling. The random row samples either way.
    """

    env_id: str
    model: str = "tiny"
    agents: list[str] | None = None
    seeds: list[int] | None = None
    num_envs: int = 16
    episodes: int = 1600
    max_tokens: int | None = None
    eval_episodes: int = 64
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_limit: float | None = None
    greedy: bool = True

    def agent_config(self, agent: str) -> dict[str, Any]:
        return {**self.config.get("*", {}), **self.config.get(agent, {})}


@dataclass
class TRLSpec:
    """The TRL GRPOTrainer comparison (run when ``trl`` is installed).

    Both sides: the same model, reward (VADER on TextGen-v0's train prompts), ``prompts x
    group_size`` completions of ``max_new_tokens`` tokens per iteration, ``iterations`` measured
    iterations after ``warmup`` unmeasured ones, fp32, one update epoch, one optimizer step per
    iteration, the same learning rate and KL weight."""

    model: str = "smollm2-135m"
    prompts: int = 4
    group_size: int = 4
    max_new_tokens: int = 32
    iterations: int = 4
    warmup: int = 1
    lr: float = 1e-5
    beta: float = 0.04
    seed: int = 0
    learners: list[str] = field(default_factory=lambda: ["grpo", "ppo"])
    # TRL's own default is True (activation checkpointing: less memory, ~1/3 more compute);
    # ours recomputes only the LM head's logits, so False is the like-for-like setting.
    trl_gradient_checkpointing: bool = False


@dataclass
class Preset:
    name: str
    description: str
    tasks: list[TaskSpec]
    agents: list[str] = field(default_factory=lambda: list(DEFAULT_AGENTS))
    seeds: list[int] = field(default_factory=lambda: [0])
    threads: int | None = None
    trl: TRLSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cells(self) -> list[tuple[TaskSpec, str, int]]:
        """(task, agent or reference row, seed) in run order: references first, then agents."""
        out = []
        for task in self.tasks:
            agents = task.agents if task.agents is not None else self.agents
            seeds = task.seeds if task.seeds is not None else self.seeds
            for seed in seeds:
                # An untrained pretrained model is the same whatever the seed: evaluate it once.
                if task.model == "tiny" or seed == seeds[0]:
                    out.append((task, "untrained", seed))
                out.append((task, "random", seed))
            out += [(task, agent, seed) for agent in agents for seed in seeds]
        return out


# The tiny model brings its own learner defaults (agents.LMPolicy.tiny: lr 1e-3, no KL penalty,
# 256 episodes per update). "sft+ppo": PPO after a supervised warm start on the references.
_CHAR_CONFIG = {
    "sft+ppo": {"warm_start": {"epochs": 3, "lr": 3e-3, "max_examples": 512}},
}
# The character tasks' budget: 60,000 generated tokens (env token-steps) per cell.
_CHAR_TOKENS = 60_000
_WITH_SFT = [*DEFAULT_AGENTS, "sft+ppo"]  # tasks with references also get the warm-started row
_CHAR_AGENTS = [*_WITH_SFT, "sb3-ppo"]  # character tasks: small vocabulary, SB3 PPO as the peer
_LM_AGENTS = ["ppo", "grpo", "trl-grpo"]  # SmolLM2 tasks: TRL's GRPOTrainer as the peer

# The tuned comparison with the peer (preset "peers"): Copy and Reverse on the dense reward for
# every row (the env's potential-shaped reward: the change of the score per token; an episode's
# rewards still sum to its score), 16 envs, 60,000 token-steps per cell. Each side's setting is
# the best of its grid in SWEEPS["peers"] (the same number of settings, seeds and budget per side;
# `python -m benchmarks.sweep`, results in benchmarks/README.md).
_DENSE = {"reward_mode": "dense"}
# SB3's PPO tuned for token envs: 16 envs x 64 steps per update, minibatches of 256, 4 epochs.
_SB3_TOKEN_PPO = {
    "n_steps": 64,
    "batch_size": 256,
    "n_epochs": 4,
    "learning_rate": 1e-3,
    "clip_range": 0.1,
    "ent_coef": 0.01,
    "gamma": 1.0,
}
# The sweep's picks (benchmarks/README.md): each side's best setting on each task.
_TUNED_PPO = {"episodes_per_update": 128, "update_epochs": 4, "minibatch_size": 32}
_PEERS_CONFIG = {
    "TextGen-Copy-v0": {"sb3-ppo": dict(_SB3_TOKEN_PPO), "ppo": dict(_TUNED_PPO)},
    "TextGen-Reverse-v0": {
        "sb3-ppo": {**_SB3_TOKEN_PPO, "learning_rate": 2e-3},
        "ppo": {**_TUNED_PPO, "lr": 2e-3},
    },
}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        description="seconds: tests of the harness (tiny LM, TextGen-Copy-v0, 2 agents and SB3 "
        "PPO, 1 seed)",
        tasks=[
            TaskSpec(
                "TextGen-Copy-v0",
                num_envs=8,
                episodes=24,
                eval_episodes=16,
                tiny={"n_layer": 1, "n_embd": 32},
                precision="fp32",
                config={
                    **copy.deepcopy(_CHAR_CONFIG),
                    "*": {"episodes_per_update": 8},  # one rollout: seconds, not a learning test
                    "sb3-ppo": {"n_steps": 8, "batch_size": 64, "n_epochs": 1},
                },
            ),
        ],
        agents=["reinforce", "grpo", "sb3-ppo"],
        seeds=[0],
        threads=1,
    ),
    "quick": Preset(
        name="quick",
        description="about two hours on a 2-core CPU: character tasks with a tiny LM at 60,000 "
        "token-steps per cell (all agents and SB3 PPO x 3 seeds) and SmolLM2-135M on TextGen-v0 for "
        "180 s of training per cell, equal wall time (PPO, GRPO, TRL's GRPOTrainer; 8 seeds)",
        tasks=[
            TaskSpec(
                "TextGen-Copy-v0",
                agents=_CHAR_AGENTS,
                num_envs=64,
                episodes=20_000,
                max_tokens=_CHAR_TOKENS,
                eval_episodes=128,
                precision="fp32",
                config=copy.deepcopy(_CHAR_CONFIG),
            ),
            TaskSpec(
                "TextGen-Reverse-v0",
                agents=_CHAR_AGENTS,
                num_envs=64,
                episodes=20_000,
                max_tokens=_CHAR_TOKENS,
                eval_episodes=128,
                precision="fp32",
                config={**copy.deepcopy(_CHAR_CONFIG), "sb3-ppo": {"n_layers": 2}},
            ),
            TaskSpec(  # equal wall time: 100,000 episodes are out of reach in 180 s
                "TextGen-v0",
                model="smollm2-135m",
                agents=_LM_AGENTS,
                seeds=list(range(8)),
                num_envs=16,
                episodes=100_000,
                time_limit=180.0,
                eval_episodes=64,
                precision="fp32",
                config={"*": {"lr": 5e-5}},
            ),
        ],
        agents=list(DEFAULT_AGENTS),
        seeds=[0, 1, 2],
        trl=TRLSpec(iterations=3),
    ),
    "full": Preset(
        name="full",
        description="one GPU: six tasks, all agents x 3 seeds, SmolLM2-135M on the language tasks",
        tasks=[
            TaskSpec(
                "TextGen-Copy-v0",
                agents=_CHAR_AGENTS,
                episodes=20_000,
                eval_episodes=200,
                config=copy.deepcopy(_CHAR_CONFIG),
            ),
            TaskSpec(
                "TextGen-Reverse-v0",
                agents=_CHAR_AGENTS,
                episodes=20_000,
                eval_episodes=200,
                config={**copy.deepcopy(_CHAR_CONFIG), "sb3-ppo": {"n_layers": 2}},
            ),
            TaskSpec(
                "TextGen-Sort-v0",
                agents=_CHAR_AGENTS,
                episodes=20_000,
                eval_episodes=200,
                config={**copy.deepcopy(_CHAR_CONFIG), "sb3-ppo": {"n_layers": 2}},
            ),
            TaskSpec(
                "TextGen-v0",
                model="smollm2-135m",
                agents=[*DEFAULT_AGENTS, "nlpo", "trl-grpo"],
                num_envs=64,
                episodes=12_800,
                eval_episodes=256,
                config={"*": {"lr": 2e-5}},
            ),
            TaskSpec(
                "TextGen-Arithmetic-v0",
                model="smollm2-135m",
                agents=[*DEFAULT_AGENTS, "trl-grpo"],
                num_envs=64,
                episodes=12_800,
                eval_episodes=256,
                config={"*": {"lr": 2e-5}},
            ),
            TaskSpec(
                "TextGen-Keywords-v0",
                model="smollm2-135m",
                agents=[*DEFAULT_AGENTS, "trl-grpo"],
                num_envs=64,
                episodes=6_400,
                eval_episodes=128,
                config={"*": {"lr": 2e-5}},
            ),
        ],
        agents=list(DEFAULT_AGENTS),
        seeds=[0, 1, 2],
        trl=TRLSpec(prompts=16, group_size=4, iterations=10, warmup=2),
    ),
    "peers": Preset(
        name="peers",
        description="tuned peers at equal budget: our PPO and SB3's PPO on Copy and Reverse, each "
        "with its best setting of a sweep of the same size on that task (python -m "
        "benchmarks.sweep), every row on the dense reward, 60,000 token-steps per cell, 16 envs, "
        "3 seeds",
        tasks=[
            TaskSpec(
                env_id,
                num_envs=16,
                episodes=100_000,  # out of reach: the budget is the 60,000 tokens
                max_tokens=_CHAR_TOKENS,
                eval_episodes=128,
                env_kwargs=dict(_DENSE),
                precision="fp32",
                config=copy.deepcopy(config),
            )
            for env_id, config in _PEERS_CONFIG.items()
        ],
        agents=["ppo", "sb3-ppo"],
        seeds=[0, 1, 2],
        threads=1,
    ),
    "nlpo": Preset(
        name="nlpo",
        description="NLPO (top-p 0.9 mask policy, refreshed every 5 iterations) vs PPO on "
        "TextGen-v0 with SmolLM2-135M, same settings otherwise",
        tasks=[
            TaskSpec(
                "TextGen-v0",
                model="smollm2-135m",
                num_envs=16,
                episodes=320,
                eval_episodes=64,
                precision="fp32",
                config={"*": {"lr": 5e-5}},
            ),
        ],
        agents=["ppo", "nlpo"],
        seeds=[0],
        threads=1,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SystemExit(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


# Sweep grids (`python -m benchmarks.sweep --preset <name>`): per preset and agent, the settings
# tried; each replaces the task's config[agent] (the agent's defaults plus the setting). Both
# sides get the same number of settings.
SWEEPS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "peers": {
        "sb3-ppo": [
            dict(_SB3_TOKEN_PPO),
            {**_SB3_TOKEN_PPO, "learning_rate": 2e-3},
            {**_SB3_TOKEN_PPO, "n_epochs": 10},
            {**_SB3_TOKEN_PPO, "n_layers": 2},
        ],
        "ppo": [
            {},  # LMPolicy.tiny's learner defaults
            {"episodes_per_update": 128, "update_epochs": 4},
            dict(_TUNED_PPO),
            {**_TUNED_PPO, "lr": 2e-3},
        ],
    },
}

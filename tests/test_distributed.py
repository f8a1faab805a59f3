"""Data-parallel training: 2 CPU processes (gloo) vs 1 process with the same total batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import PPO, PPOConfig, Rollout, evaluate
from agents import distributed as D

N = 4  # env slots per rank
ITERATIONS = 3
# One minibatch, one epoch, no whitening, fixed-length completions (no EOS): every rank has the
# same number of tokens, so the mean of the ranks' losses is the loss of the union of the batches
# and the averaged gradient is the single-process gradient.
CONFIG = dict(
    lr=3e-3,
    seed=0,
    progress=False,
    kl_coef=0.01,
    minibatch_size=None,
    update_epochs=1,
    whiten_advantages=False,
    target_kl=None,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    import agents.base

    rollouts = []
    collect = agents.base.collect_rollout

    def recording(*args, **kwargs):
        rollouts.append(collect(*args, **kwargs))
        return rollouts[-1]

    agents.base.collect_rollout = recording
    config = PPOConfig(
        **CONFIG,
        checkpoint_dir=os.path.join(out, "ckpt"),
        checkpoint_every=ITERATIONS,
        eval_every=ITERATIONS,
        eval_episodes=8,
        log_dir=os.path.join(out, "logs"),
        tensorboard=False,
    )
    agent = PPO(
        make_policy(seed=rank),
        make_envs(N, stop_on_eos=False),
        config,
        eval_envs=make_envs(N, stop_on_eos=False),
    )
    assert agent.dist == D.DistInfo(rank, world, rank)
    agent.learn(iterations=ITERATIONS)
    final_eval = evaluate(
        agent, make_envs(N, stop_on_eos=False), 2 * N, split="test", seed=7, gather=True
    )
    torch.save(
        {
            "params": {k: v.detach().clone() for k, v in agent.policy.state_dict().items()},
            "rollouts": [vars(r) for r in rollouts],
            "history": agent.history,
            "episodes": agent.episodes,
            "eval": final_eval.as_dict(),
        },
        os.path.join(out, f"rank{rank}.pt"),
    )
    D.cleanup()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    mp.start_processes(_worker, args=(2, _free_port(), out), nprocs=2, start_method="spawn")
    return out, [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in (0, 1)]


def test_parameters_identical_across_ranks(two_ranks):
    _, (r0, r1) = two_ranks
    # Rank 1 built its model with another seed: the initial broadcast made them equal.
    for key, value in r0["params"].items():
        assert torch.equal(value, r1["params"][key]), key
    assert r0["episodes"] == r1["episodes"] == 2 * N * ITERATIONS
    # Each rank drew its own prompts and samples.
    a, b = r0["rollouts"][0], r1["rollouts"][0]
    assert not torch.equal(a["input_ids"], b["input_ids"])
    # Logged figures are averaged over ranks (equal on both), evaluation gathered.
    assert [h["reward"] for h in r0["history"]] == [h["reward"] for h in r1["history"]]
    assert r0["history"][-1]["eval_reward"] == r1["history"][-1]["eval_reward"]


def test_rank_zero_logs_the_global_iteration_and_episodes(two_ranks):
    import csv

    out, (r0, _) = two_ranks
    with open(os.path.join(out, "logs", "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == list(range(1, ITERATIONS + 1))
    assert [int(r["episodes"]) for r in rows] == [2 * N * i for i in range(1, ITERATIONS + 1)]
    assert float(rows[-1]["reward"]) == pytest.approx(r0["history"][-1]["reward"])


def test_evaluation_gathers_every_ranks_episodes(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["eval"] == r1["eval"] and r0["eval"]["n_episodes"] == 2 * N
    # = rank 0's N episodes (seed 7) and rank 1's (seed 8), evaluated in one process.
    policy = make_policy()
    policy.load_state_dict(r0["params"])
    parts = [
        evaluate(policy, make_envs(N, stop_on_eos=False), N, split="test", seed=7 + rank)
        for rank in (0, 1)
    ]
    expected = sum(p.reward_mean for p in parts) / 2
    assert r0["eval"]["reward_mean"] == pytest.approx(expected, abs=1e-6)


def test_checkpoint_written_once_with_every_ranks_rng(two_ranks):
    from safetensors.torch import load_file

    out, _ = two_ranks
    root = os.path.join(out, "ckpt")
    assert Path(root, "latest").read_text() == f"iter-{ITERATIONS:06d}"
    rng = load_file(os.path.join(root, f"iter-{ITERATIONS:06d}", "rng.safetensors"))
    assert not torch.equal(rng["generator_rank0"], rng["generator_rank1"])


def test_two_ranks_equal_one_process_with_the_same_total_batch(two_ranks):
    _, (r0, r1) = two_ranks
    agent = PPO(make_policy(seed=0), make_envs(2 * N, stop_on_eos=False), PPOConfig(**CONFIG))
    for a, b in zip(r0["rollouts"], r1["rollouts"]):
        union = {
            k: (torch.cat([a[k], b[k]]) if isinstance(a[k], torch.Tensor) else a[k] + b[k])
            for k in a
            if a[k] is not None
        }
        union["prompt_len"], union["seconds"] = a["prompt_len"], a["seconds"]
        agent.update(Rollout(**union))
    for key, value in agent.policy.state_dict().items():
        torch.testing.assert_close(value, r0["params"][key], atol=1e-5, rtol=1e-5, msg=key)


def test_environment_detection_and_backend():
    assert not D.env_info({}).enabled
    info = D.env_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (3, 4, 1, False)
    assert D.default_backend(cuda_available=False) == "gloo"
    if torch.distributed.is_nccl_available():
        assert D.default_backend(cuda_available=True) == "nccl"
    # Outside a process group the helpers are identities.
    assert D.mean_over_ranks({"x": 2.0}) == {"x": 2.0}
    assert D.any_rank(True) and not D.broadcast_flag(False)

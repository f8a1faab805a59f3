"""benchmarks/verifiable.py runs end to end (tiny model on Copy) and drops flat groups."""

from __future__ import annotations

import json

import torch

from agents.rollout import Rollout
from benchmarks import verifiable


def _rollout(scores: list[float]) -> Rollout:
    n, T = len(scores), 3
    return Rollout(
        input_ids=torch.arange(n)[:, None].repeat(1, 5),
        attention_mask=torch.ones(n, 5),
        prompt_len=2,
        mask=torch.ones(n, T, dtype=torch.bool),
        logprobs=torch.zeros(n, T),
        values=torch.zeros(n, T),
        rewards=torch.zeros(n, T),
        scores=torch.tensor(scores),
        prompts=[f"p{i}" for i in range(n)],
        completions=[f"c{i}" for i in range(n)],
        seconds=1.0,
    )


def test_drop_flat_groups_keeps_whole_informative_groups():
    kept, dropped = verifiable.drop_flat_groups(_rollout([1, 1, 0, 1, 0, 0, 0.5, 0.5]), 2)
    assert dropped == 3
    assert kept.scores.tolist() == [0.0, 1.0]
    assert kept.input_ids[:, 0].tolist() == [2, 3] and kept.prompts == ["p2", "p3"]
    none, dropped = verifiable.drop_flat_groups(_rollout([1, 1, 0, 0]), 2)
    assert none is None and dropped == 2
    same, dropped = verifiable.drop_flat_groups(_rollout([1, 0, 0, 1]), 2)
    assert dropped == 0 and same.num_envs == 4


def test_verifiable_script_tiny_end_to_end(tmp_path):
    out = tmp_path / "run.json"
    result = verifiable.main(
        [
            "--env",
            "TextGen-Copy-v0",
            "--model",
            "tiny",
            "--minutes",
            "0.05",
            "--eval-episodes",
            "8",
            "--num-envs",
            "8",
            "--group-size",
            "4",
            "--threads",
            "1",
            "--warm-start-epochs",
            "1",
            "--warm-start-examples",
            "32",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    for key in ("before", "after_warm_start", "after"):
        for mode in ("sampled", "greedy"):
            assert saved[key][mode]["n_episodes"] == 8
            assert 0.0 <= saved[key][mode]["distinct_completions"] <= 1.0
    assert saved["train"]["learner"] == "GRPODropFlat"
    assert saved["train"]["episodes"] > 0
    assert result["cis_separated"] in (True, False)

"""examples/cleanrl_ppo.py: the single-file PPO (gymnasium + torch only) learns a textgym task."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cleanrl_ppo.py"


@pytest.fixture(scope="module")
def cleanrl():
    spec = importlib.util.spec_from_file_location("cleanrl_ppo", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cleanrl_ppo"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_example_uses_no_agents_code():
    source = EXAMPLE.read_text()
    assert "import agents" not in source and "from agents" not in source
    assert "stable_baselines3" not in source


def test_cli_parses_dataclass_fields(cleanrl):
    args = cleanrl.parse_args(["--total-timesteps", "123", "--no-anneal-lr", "--ent-coef", "0"])
    assert args.total_timesteps == 123 and args.anneal_lr is False and args.ent_coef == 0.0
    assert args.env_id == "TextGen-Copy-v0"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--help"], capture_output=True, text=True, check=True
    )
    assert "--total-timesteps" in out.stdout


def test_cleanrl_ppo_learns_small_copy(cleanrl):
    """A small copy task (strings of 3 over "abc"): the greedy test score ends far above the
    first episodes' (near-random) returns."""
    args = cleanrl.parse_args(
        [
            "--env-id",
            "TextGen-Copy-v0",
            "--env-kwargs",
            '{"reward_mode": "dense", "max_new_tokens": 4, "max_prompt_tokens": 5,'
            ' "task_kwargs": {"alphabet": "abc", "min_len": 3, "max_len": 3, "n_train": 27}}',
            "--total-timesteps",
            "20000",
            "--learning-rate",
            "3e-3",
            "--threads",
            "1",
            "--eval-episodes",
            "64",
        ]
    )
    result = cleanrl.train(args)
    print(result)
    assert result["last_return"] > result["first_return"] + 0.3
    assert result["test_score"] >= 0.6

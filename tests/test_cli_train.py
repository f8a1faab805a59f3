"""`textgym train` / `eval` / `bench --help` end to end through subprocesses, on a tiny model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest


def run(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textgym.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "copy"
    result = run(
        "train",
        "--env",
        "TextGen-Copy-v0",
        "--agent",
        "grpo",
        "--model",
        "tiny",
        "--episodes",
        "16",
        "--num-envs",
        "8",
        "--lr",
        "1e-3",
        "--group-size",
        "4",
        "--config",
        '{"ent_coef": 0.01, "episodes_per_update": 8}',
        "--out",
        str(out),
        "--threads",
        "1",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_run_config_checkpoint_and_logs(trained):
    out, result = trained
    assert "training GRPO on TextGen-Copy-v0 with tiny" in result.stdout
    run_cfg = json.loads((out / "run.json").read_text())
    assert run_cfg["env_id"] == "TextGen-Copy-v0" and run_cfg["agent"] == "grpo"
    assert run_cfg["model"] == "tiny" and run_cfg["seed"] == 0
    # episodes_per_update=8: one rollout per update (the tiny model's default is 256 episodes);
    # ent_coef > 0 moves the policy even when all 16 episodes score 0 (no reward, no change)
    assert run_cfg["config"] == {
        "ent_coef": 0.01,
        "episodes_per_update": 8,
        "lr": 1e-3,
        "group_size": 4,
    }
    assert run_cfg["config_resolved"]["group_size"] == 4
    assert (out / "checkpoints" / "latest").read_text() == "iter-000002"
    assert (out / "checkpoints" / "iter-000002" / "model.safetensors").exists()
    assert [r["iteration"] for r in rows(out / "progress.csv")] == ["1", "2"]
    assert list(out.glob("events.out.tfevents.*"))  # TensorBoard


def test_resume_continues_from_the_folder_alone(trained):
    out, _ = trained
    result = run("train", "--out", str(out), "--resume", "--episodes", "32", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "resumed grpo on TextGen-Copy-v0 at iteration 2 (16 episodes)" in result.stdout
    assert (out / "checkpoints" / "latest").read_text() == "iter-000004"
    assert [r["iteration"] for r in rows(out / "progress.csv")] == ["1", "2", "3", "4"]
    assert "GRPO" in result.stderr  # the tqdm progress bar


def test_eval_of_a_checkpoint_and_of_the_untrained_model(trained, tmp_path):
    out, _ = trained
    report = tmp_path / "eval.json"
    result = run(
        "eval",
        str(out),
        "--episodes",
        "16",
        "--samples",
        "3",
        "--json",
        str(report),
        "--threads",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "GRPO checkpoint" in result.stdout and "test split" in result.stdout
    assert "reward " in result.stdout and "perplexity" in result.stdout
    assert "| prompt | completion | score |" in result.stdout
    figures = json.loads(report.read_text())
    assert figures["n_episodes"] == 16 and len(figures["samples"]) == 3
    assert figures["kl"] != 0  # the checkpoint moved away from the untrained model

    untrained = run(
        "eval", "--env", "TextGen-Copy-v0", "--model", "tiny", "--episodes", "8", "--threads", "1"
    )
    assert untrained.returncode == 0, untrained.stderr
    assert "untrained tiny" in untrained.stdout and "KL (k3) 0.000" in untrained.stdout


def test_train_and_eval_input_errors(tmp_path, trained):
    out, _ = trained
    again = run("train", "--env", "TextGen-Copy-v0", "--model", "tiny", "--out", str(out))
    assert again.returncode != 0 and "--resume" in again.stderr
    missing = run("train", "--out", str(tmp_path / "nothing"), "--resume")
    assert missing.returncode != 0 and "no run.json" in missing.stderr
    no_env = run("train", "--out", str(tmp_path / "x"))
    assert no_env.returncode != 0 and "--env" in no_env.stderr
    char = run(
        "train", "--env", "TextGen-Copy-v0", "--model", "smollm2-135m", "--out", str(tmp_path / "y")
    )
    assert char.returncode != 0 and "--model tiny" in char.stderr
    bad_json = run(
        "train",
        "--env",
        "TextGen-Copy-v0",
        "--model",
        "tiny",
        "--env-kwargs",
        "{x",
        "--out",
        str(tmp_path / "z"),
    )
    assert bad_json.returncode != 0 and "--env-kwargs is not valid JSON" in bad_json.stderr
    unknown = run("eval", "--env", "TextGen-Nope-v0", "--model", "tiny")
    assert unknown.returncode != 0 and "textgym list" in unknown.stderr
    assert run("eval", str(tmp_path)).returncode != 0


def test_help_documents_the_commands():
    top = run("--help")
    assert top.returncode == 0
    for command in ("train", "eval", "bench"):
        assert command in top.stdout
    train = run("train", "--help")
    for flag in (
        "--env",
        "--agent",
        "--model",
        "--episodes",
        "--out",
        "--resume",
        "--lr",
        "--kl-coef",
        "--num-envs",
        "--env-kwargs",
        "--seed",
    ):
        assert flag in train.stdout
    bench = run("bench", "--help")
    assert bench.returncode == 0 and "--preset" in bench.stdout and "quick" in bench.stdout


def test_eval_of_an_nlpo_run_acts_under_its_mask(tmp_path):
    """An NLPO checkpoint is evaluated as NLPO acts (under its saved mask policy), not as the
    bare policy would."""
    import torch

    from agents import NLPO, evaluate
    from agents.cli import build_policy, make_envs
    from textgym.cli import main

    out = tmp_path / "nlpo"
    trained = run(
        "train",
        "--env",
        "TextGen-Copy-v0",
        "--agent",
        "nlpo",
        "--model",
        "tiny",
        "--episodes",
        "24",
        "--num-envs",
        "8",
        "--lr",
        "1e-3",
        "--out",
        str(out),
        "--config",
        '{"nlpo_update_every": 2, "nlpo_top_p": 0.5}',
        "--threads",
        "1",
        "--no-progress",
    )
    assert trained.returncode == 0, trained.stderr
    report = tmp_path / "eval.json"
    torch.set_num_threads(1)
    assert (
        main(
            [
                "eval",
                str(out),
                "--episodes",
                "8",
                "--num-envs",
                "8",
                "--eval-seed",
                "3",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    kl = json.loads(report.read_text())["kl"]
    run_cfg = json.loads((out / "run.json").read_text())

    def policy():
        envs = make_envs("TextGen-Copy-v0", 8, run_cfg["env_kwargs"])
        p = build_policy("tiny", envs, seed=0, precision=run_cfg["precision"])
        p.ensure_reference()
        return p, envs

    p, envs = policy()
    agent = NLPO(p, envs, NLPO.Config(**run_cfg["config"])).resume(out / "checkpoints")
    masked = evaluate(agent, make_envs("TextGen-Copy-v0", 8, run_cfg["env_kwargs"]), 8, seed=3)
    bare = evaluate(agent.policy, make_envs("TextGen-Copy-v0", 8, run_cfg["env_kwargs"]), 8, seed=3)
    assert kl == pytest.approx(masked.kl, abs=1e-6) and abs(kl - bare.kl) > 1e-3

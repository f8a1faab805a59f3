"""``agents.evaluation.verdict``: one rule for "did it learn", shared by ``textgym train``, the
demo and the benchmark leaderboard."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from agents.evaluation import EvalResult, verdict, verdict_line
from benchmarks.stats import not_learned


def result(lo: float, hi: float, distinct: float = 0.9, empty: float = 0.0) -> EvalResult:
    return EvalResult(
        n_episodes=8,
        reward_mean=(lo + hi) / 2,
        reward_std=0.1,
        reward_ci=(lo, hi),
        kl=0.0,
        perplexity=10.0,
        distinct_1=0.5,
        distinct_2=0.5,
        mean_length=4.0,
        distinct=distinct,
        empty=empty,
    )


def test_a_higher_reward_with_half_the_completions_empty_is_a_collapse():
    before = result(0.0, 0.1)
    assert verdict(result(0.5, 0.7, empty=0.5), {"untrained": before}) == "collapsed"
    assert verdict(result(0.5, 0.7, distinct=0.05), {"untrained": before}) == "collapsed"
    assert verdict(result(0.05, 0.3), {"untrained": before}) == "= untrained"
    assert verdict(result(0.5, 0.7), {"untrained": before}) == "learned"
    assert verdict(result(-0.5, -0.2), {"untrained": before}) == "< untrained"
    assert verdict_line(result(0.5, 0.7, empty=0.75), before).startswith("verdict: collapsed")
    assert "overlaps the untrained" in verdict_line(result(0.05, 0.3), before)
    assert verdict_line(result(0.5, 0.7), before).startswith("verdict: learned")


def test_the_leaderboard_marks_rows_with_the_same_rule():
    refs = [{"agent": "untrained", "reward_ci_low": 0.0, "reward_ci_high": 0.1}]
    row = {"agent": "ppo", "reward_ci_low": 0.5, "reward_ci_high": 0.7, "distinct": 0.9}
    assert not_learned(row, refs) is None
    assert not_learned({**row, "empty": 0.6}, refs) == "collapsed"
    assert not_learned({**row, "reward_ci_low": 0.05}, refs) == "= untrained"
    assert verdict(row, {"untrained": refs[0]}) == "learned"


def test_train_with_eval_episodes_prints_the_verdict(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--env", "TextGen-Copy-v0", "--model", "tiny", "--agent", "reinforce"]
    args += ["--episodes", "8", "--num-envs", "4", "--eval-episodes", "8", "--threads", "1"]
    args += ["--out", str(out), "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "textgym.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("verdict: ")]
    assert len(lines) == 1, done.stdout
    figures = json.loads((out / "evaluation.json").read_text())
    before, after = figures["before"], figures["after"]
    assert figures["verdict"] == verdict(after, {"untrained": before})
    assert lines[0] == verdict_line(after, before)
    assert 0 < after["distinct"] <= 1 and 0 <= after["empty"] <= 1
    assert math.isfinite(after["reward_ci_low"])


def test_the_demo_prints_the_verdict(tmp_path):
    args = ["--env", "TextGen-Copy-v0", "--model", "tiny", "--minutes", "0.02"]
    args += ["--eval-episodes", "4", "--num-envs", "4", "--threads", "1", "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "agents.demo", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "demo.json").read_text())
    assert result["verdict"] == verdict(result["after"], {"untrained": result["before"]})
    assert verdict_line(result["after"], result["before"]) in done.stdout

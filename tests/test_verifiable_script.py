"""benchmarks/verifiable.py runs end to end (tiny model on Copy); dropping flat groups is the
learners' option, tested in test_drop_flat_groups.py."""

from __future__ import annotations

import json

import pytest

from agents.evaluation import verdict
from benchmarks import verifiable

# A seconds-long run of the tiny model: 8 envs = 2 groups of 4, one thread.
TINY = ["--model", "tiny", "--minutes", "0.05", "--num-envs", "8", "--group-size", "4"]
TINY += ["--threads", "1"]


def test_verifiable_script_tiny_end_to_end(tmp_path):
    out = tmp_path / "run.json"
    result = verifiable.main(
        [
            *TINY,
            "--env",
            "TextGen-Copy-v0",
            "--eval-episodes",
            "8",
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
    assert saved["train"]["learner"] == "GRPO"
    assert saved["train"]["config"]["drop_flat_groups"] is True
    assert saved["train"]["episodes"] > 0
    assert set(result["cis_separated"]) == {"sampled", "greedy"}  # RL vs the warm start
    for mode in ("sampled", "greedy"):  # the shared verdict, against the warm start
        after, start = saved["after"][mode], saved["after_warm_start"][mode]
        assert saved["verdict"][mode] == verdict(after, {"warm-started": start})


def test_verifiable_script_curriculum_moves_up_and_evaluates_the_next_level(tmp_path):
    """--curriculum trains under VectorCurriculum from --env's level; promote_at 0 moves it up
    after every window, so the run must reach a harder level and report it."""
    result = verifiable.main(
        [
            *TINY,
            "--env",
            "TextGen-WordSorting-Easy-v0",
            "--curriculum",
            "easy,medium,hard",
            "--promote-at",
            "0",
            "--curriculum-window",
            "8",
            "--eval-episodes",
            "4",
            "--warm-start-epochs",
            "1",
            "--warm-start-examples",
            "8",
            "--no-untrained",
        ]
    )
    assert "before" not in result  # --no-untrained: RL is judged against the warm start
    assert result["train"]["level_reached"] in ("medium", "hard")
    levels = [row[1] for row in result["train"]["curriculum_curve"]]
    assert levels == sorted(levels) and levels[-1] >= 1  # never demoted (demote_at 0)
    for key in ("after_warm_start", "after", "before_training_medium", "after_medium"):
        assert result[key]["sampled"]["n_episodes"] == 4
        assert "success_rate" in result[key]["sampled"]  # a verifiable task's labels


def test_verifiable_script_rejects_a_curriculum_outside_the_task():
    with pytest.raises(SystemExit, match="--curriculum"):
        verifiable.main(["--env", "TextGen-Copy-v0", "--curriculum", "easy,hard"])
    with pytest.raises(SystemExit, match="--curriculum"):
        verifiable.main(["--env", "TextGen-WordSorting-Medium-v0", "--curriculum", "easy"])
    with pytest.raises(SystemExit, match="--warm-start-epochs"):
        verifiable.main(["--env", "TextGen-Copy-v0", "--no-untrained"])

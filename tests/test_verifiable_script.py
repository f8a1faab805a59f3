"""benchmarks/verifiable.py runs end to end (tiny model on Copy); dropping flat groups is the
learners' option, tested in test_drop_flat_groups.py."""

from __future__ import annotations

import json

from benchmarks import verifiable


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
    assert saved["train"]["learner"] == "GRPO"
    assert saved["train"]["config"]["drop_flat_groups"] is True
    assert saved["train"]["episodes"] > 0
    assert result["cis_separated"] in (True, False)

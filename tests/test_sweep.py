"""Sweeps at equal budget (benchmarks.sweep) on the tiny preset, the peers preset's settings, and
the leaderboard's samples (hostile completions quoted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import sweep
from benchmarks.presets import SWEEPS, get_preset
from benchmarks.report import code_span, samples_markdown

GRID = {"reinforce": [{"lr": 1e-3}, {"lr": 3e-3, "episodes_per_update": 16}]}


@pytest.fixture
def tiny_grid(monkeypatch):
    monkeypatch.setitem(sweep.SWEEPS, "tiny", GRID)


def test_a_setting_replaces_the_agents_config_and_keeps_the_budget(tiny_grid):
    cells = sweep.sweep_cells("tiny", agents=["reinforce"], seeds=range(2))
    assert [(agent, k, seed) for _, agent, k, _, seed in cells] == [
        ("reinforce", 0, 0),
        ("reinforce", 0, 1),
        ("reinforce", 1, 0),
        ("reinforce", 1, 1),
    ]
    preset_task = get_preset("tiny").tasks[0]
    for task, agent, k, setting, _ in cells:
        assert task.config["reinforce"] == GRID["reinforce"][k] == setting
        # The shared settings and the budget are the preset's.
        assert task.agent_config(agent) == {**preset_task.config["*"], **setting}
        assert (task.episodes, task.max_tokens, task.eval_episodes) == (
            preset_task.episodes,
            preset_task.max_tokens,
            preset_task.eval_episodes,
        )
    assert get_preset("tiny").tasks[0].config.get("reinforce") is None  # the preset is untouched


def test_bad_names_are_refused(tiny_grid):
    with pytest.raises(SystemExit, match="has no sweep"):
        sweep.sweep_cells("quick")
    with pytest.raises(SystemExit, match="no grid for grpo"):
        sweep.sweep_cells("tiny", agents=["grpo"])
    with pytest.raises(SystemExit, match="not in preset 'tiny': TextGen-Reverse-v0"):
        sweep.sweep_cells("tiny", tasks=["TextGen-Reverse-v0"])


def test_a_sweep_runs_every_setting_writes_the_table_and_resumes(tiny_grid, tmp_path, capsys):
    assert (
        sweep.main(
            ["--preset", "tiny", "--agents", "reinforce", "--seeds", "1", "--out", str(tmp_path)]
        )
        == 0
    )
    cells = tmp_path / "cells" / "TextGen-Copy-v0"
    stored = {k: json.loads((cells / f"reinforce-{k}-seed0.json").read_text()) for k in (0, 1)}
    assert stored[0]["config"]["lr"] == 1e-3 and stored[1]["config"]["lr"] == 3e-3
    assert stored[1]["config"]["episodes_per_update"] == 16
    assert all(c["episodes"] >= 24 and len(c["scores"]) == 16 for c in stored.values())
    table = (tmp_path / "sweep.md").read_text()
    assert "#### TextGen-Copy-v0: reinforce" in table
    rows = [
        line for line in table.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")
    ]
    assert len(rows) == 2 and "lr=0.003, episodes_per_update=16" in rows[1]
    means = [stored[k]["eval"]["reward_mean"] for k in (0, 1)]
    best = max(range(2), key=lambda k: means[k])
    assert f"**{means[best]:.3f}**" in rows[best]
    assert "done before" not in capsys.readouterr().out

    assert (
        sweep.main(
            ["--preset", "tiny", "--agents", "reinforce", "--seeds", "1", "--out", str(tmp_path)]
        )
        == 0
    )
    assert capsys.readouterr().out.count("done before, skipped") == 2
    assert json.loads((cells / "reinforce-0-seed0.json").read_text()) == stored[0]


def test_the_peers_preset_runs_each_sides_grid_on_the_dense_reward():
    preset = get_preset("peers")
    grids = SWEEPS["peers"]
    assert len(grids["ppo"]) == len(grids["sb3-ppo"])  # the same effort on both sides
    for task in preset.tasks:
        assert task.env_kwargs == {"reward_mode": "dense"} and task.max_tokens == 60_000
        for agent in preset.agents:  # each row's setting is one its sweep tried
            assert task.config.get(agent, {}) in grids[agent]


def test_samples_are_quoted_whatever_the_model_wrote():
    hostile = "a`b``c\n| x |<script>"
    span = code_span(hostile)
    assert span.startswith("```") and span.endswith("```") and "\n" not in span
    assert code_span("`x") == "`` `x ``" and code_span("") == "(empty)"
    task = {
        "cells": {
            "ppo": [
                {"seed": 1, "samples": [{"prompt": "p1", "completion": "late", "score": 0.0}]},
                {"seed": 0, "samples": [{"prompt": "ab=", "completion": hostile, "score": 0.5}]},
            ]
        }
    }
    lines = samples_markdown(task)
    (row,) = [line for line in lines if line.startswith("- ppo:")]
    assert "`ab=` -> " + span + " (0.50)" in row and "late" not in row


def test_a_presets_results_md_section_links_its_own_plots(tmp_path):
    from benchmarks.__main__ import main

    md = tmp_path / "docs" / "RESULTS.md"
    args = ["--preset", "tiny", "--agents", "reinforce", "--no-progress", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "run"), "--results-md", str(md)]) == 0
    # Not figures/ itself, where the quick leaderboard's plots of the same tasks live.
    png = tmp_path / "docs" / "figures" / "tiny" / "curves-TextGen-Copy-v0.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "docs" / "figures" / "curves-TextGen-Copy-v0.png").exists()
    text = md.read_text()
    assert "](figures/tiny/curves-TextGen-Copy-v0.png)" in text
    assert "training reward: sparse (every row)" in text
    assert "- reinforce: `" in text and "Samples (first 3 test prompts" in text

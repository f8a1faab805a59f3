"""The quality benchmark harness on the `tiny` preset: leaderboard, PNG, results, resume, peers
(SB3 PPO; TRL's GRPOTrainer when trl is installed), collapse marks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agents.evaluation import distinct_share
from benchmarks.harness import peer_comparisons
from benchmarks.report import leaderboard_markdown, results_section, trl_markdown, update_results_md
from benchmarks.stats import (
    NOT_LEARNED,
    bootstrap_ci,
    bootstrap_difference_ci,
    curve_band,
    not_learned,
    smooth,
)

CELLS = ["untrained-seed0", "random-seed0", "reinforce-seed0", "grpo-seed0", "sb3-ppo-seed0"]


def bench(out, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "textgym.cli",
            "bench",
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    return result


def parse_leaderboard(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header)
        rows[cells[1]] = dict(zip(header, cells))
    return rows


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return out, bench(out)


def test_leaderboard_results_and_plot(tiny_bench):
    out, result = tiny_bench
    text = (out / "leaderboard.md").read_text()
    assert "## TextGen-Copy-v0 (tiny)" in text and "Machine:" in text
    rows = parse_leaderboard(text)
    assert set(rows) == {"reinforce", "grpo", "sb3-ppo", "untrained", "random"}
    for row in rows.values():
        reward = float(row["test reward"])
        lo, hi = (float(x) for x in row["95% CI"].split(".."))
        assert 0.0 <= lo <= reward <= hi <= 1.0
        assert 0.0 < float(row["distinct"]) <= 1.0 and float(row["entropy"]) >= 0.0
    assert rows["untrained"]["rank"] == rows["random"]["rank"] == "ref"
    assert rows["untrained"]["learned"] == rows["random"]["learned"] == "ref"
    assert sorted(rows[a]["rank"] for a in ("reinforce", "grpo", "sb3-ppo")) == ["1", "2", "3"]
    # 24 episodes teach a random tiny LM nothing: every agent row is marked, with the legend.
    assert all(rows[a]["learned"].startswith(NOT_LEARNED) for a in ("reinforce", "grpo"))
    assert f"{NOT_LEARNED} = not learned" in text
    assert "evaluation: 16 test episodes (greedy)" in text
    assert abs(float(rows["random"]["entropy"]) - np.log(96)) < 0.01  # uniform over 96 tokens

    png = (out / "curves-TextGen-Copy-v0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    results = json.loads((out / "results.json").read_text())
    assert results["versions"]["torch"] and results["machine"]["cores"]
    assert results["preset"]["name"] == "tiny"
    (task,) = results["tasks"]
    grpo = task["cells"]["grpo"][0]
    assert len(grpo["curve"]) == 3  # 24 episodes / 8 envs: one point per iteration
    assert grpo["episodes"] == 24 and grpo["tokens"] > 0 and len(grpo["scores"]) == 16
    assert results["run"]["cells_run"] == 5
    # The SB3 peer: the same budget (24 episodes, counted in env steps = tokens), evaluated on
    # the same test prompts with the same figures.
    sb3 = task["cells"]["sb3-ppo"][0]
    assert 24 <= sb3["episodes"] < 24 + 8 and 0 < sb3["tokens"] <= 2 * grpo["tokens"]
    assert sb3["config"]["algorithm"] == "stable_baselines3.PPO" and sb3["curve"]
    assert len(sb3["scores"]) == 16
    assert [s["prompt"] for s in sb3["samples"]] == [s["prompt"] for s in grpo["samples"]]
    for cell in (grpo, sb3, task["cells"]["untrained"][0], task["cells"]["random"][0]):
        assert set(cell["eval"]) >= {"reward_mean", "distinct", "entropy", "mean_length"}
        assert 0.0 < cell["eval"]["distinct"] <= 1.0 and cell["eval"]["entropy"] > 0.0
    (sb3_row,) = [r for r in task["rows"] if r["agent"] == "sb3-ppo"]
    assert sb3_row["distinct"] == sb3["eval"]["distinct"] and "not_learned" in sb3_row


def test_an_interrupted_benchmark_runs_only_the_missing_cells(tiny_bench):
    out, _ = tiny_bench
    cells = out / "cells" / "TextGen-Copy-v0"
    # An interruption during the grpo cell: its file was never renamed into place, only a
    # temporary file is left.
    (cells / "grpo-seed0.json").rename(cells / ".grpo-seed0.json.tmp-999")
    kept = {name: (cells / f"{name}.json").stat().st_mtime_ns for name in CELLS[:3]}
    result = bench(out)
    assert result.stdout.count("done before, skipped") == 4
    assert "grpo seed 0: test reward" in result.stdout
    assert "(1 cells run, 4 skipped)" in result.stdout
    assert {n: (cells / f"{n}.json").stat().st_mtime_ns for n in CELLS[:3]} == kept
    assert (cells / "grpo-seed0.json").exists()
    assert "grpo" in parse_leaderboard((out / "leaderboard.md").read_text())


def test_results_md_section_replaces_only_its_own(tiny_bench, tmp_path):
    out, _ = tiny_bench
    results = json.loads((out / "results.json").read_text())
    section = results_section(
        results, [out / "curves-TextGen-Copy-v0.png"], command="python -m benchmarks --preset tiny"
    )
    md = tmp_path / "RESULTS.md"
    md.write_text("# Measured results\n\nintro\n\n## NLPO vs PPO\n\nkept\n")
    update_results_md(md, section, "tiny")
    update_results_md(md, section.replace("Command:", "Command again:"), "tiny")
    text = md.read_text()
    assert text.count("<!-- bench:tiny:start") == 1 and text.count("<!-- bench:tiny:end -->") == 1
    assert "Command again: `python -m benchmarks --preset tiny`" in text
    assert text.startswith("# Measured results\n\nintro") and "## NLPO vs PPO\n\nkept" in text
    assert "## `textgym bench --preset tiny`" in text and "### TextGen-Copy-v0 (tiny)" in text
    assert "](figures/curves-TextGen-Copy-v0.png)" in text and "| sb3-ppo |" in text


def test_bootstrap_ci_and_curve_band():
    rng = np.random.default_rng(0)
    groups = [rng.normal(0.5, 0.1, 64).tolist(), rng.normal(0.6, 0.1, 64).tolist()]
    mean, lo, hi = bootstrap_ci(groups)
    assert lo < mean < hi and abs(mean - 0.55) < 0.05
    assert bootstrap_ci(groups) == (mean, lo, hi)  # seeded
    one = bootstrap_ci([[1.0, 1.0, 1.0]])
    assert one == (1.0, 1.0, 1.0)
    m, low, high = curve_band([np.arange(5.0), np.arange(5.0) + 1, np.arange(6.0)])
    assert len(m) == 5 and np.all(low <= m) and np.all(m <= high)
    assert np.allclose(smooth(np.array([0.0, 2.0, 4.0]), 2), [0.0, 1.0, 3.0])
    assert trl_markdown({"error": "trl is not installed"}) == "Not run: trl is not installed"


def test_difference_ci_pairs_the_test_prompts_and_resamples_each_rows_seeds():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.0, 1.0, 64)  # per test prompt, the same in every cell
    better = [(difficulty + 0.05 + rng.normal(0, 0.01, 64)).tolist() for _ in range(3)]
    worse = [(difficulty + rng.normal(0, 0.01, 64)).tolist() for _ in range(3)]
    # The rows' own CIs overlap (the prompts' spread dominates them)...
    assert bootstrap_ci(better)[1] < bootstrap_ci(worse)[2]
    # ...but every prompt is 0.05 better: the paired difference is clearly above 0.
    diff, lo, hi = bootstrap_difference_ci(better, worse)
    assert abs(diff - 0.05) < 0.01 and 0.03 < lo < diff < hi < 0.07
    assert bootstrap_difference_ci(better, worse) == (diff, lo, hi)  # seeded
    d, lo, hi = bootstrap_difference_ci(worse, better)
    assert hi < 0 and abs(d + diff) < 1e-12
    # Seeds that disagree widen it: one training run of the better row failed.
    failed = [*better[:2], (difficulty - 0.3).tolist()]
    _, lo, hi = bootstrap_difference_ci(failed, worse)
    assert lo < 0 < hi
    # Different numbers of episodes: no pairing, still a difference of the means.
    d, lo, hi = bootstrap_difference_ci([[1.0, 1.0]], [[0.0, 0.0, 0.0]])
    assert (d, lo, hi) == (1.0, 1.0, 1.0)
    assert all(np.isnan(bootstrap_difference_ci([], worse)))


def test_leaderboard_states_ours_minus_the_peer_of_the_same_algorithm(tiny_bench):
    out, _ = tiny_bench
    results = json.loads((out / "results.json").read_text())
    (task,) = results["tasks"]
    sb3 = task["cells"]["sb3-ppo"]
    ahead = [{**c, "scores": [x + 1.0 for x in c["scores"]]} for c in sb3]
    (row,) = peer_comparisons({"sb3-ppo": sb3, "ppo": ahead, "grpo": task["cells"]["grpo"]})
    assert (row["agent"], row["peer"]) == ("ppo", "sb3-ppo")  # grpo has no trl-grpo row here
    assert abs(row["difference"] - 1.0) < 1e-9 and row["ci_low"] > 0
    assert peer_comparisons({"sb3-ppo": sb3}) == []  # no counterpart, no comparison
    task["comparisons"] = [row, {**row, "difference": -0.1, "ci_low": -0.2, "ci_high": 0.05}]
    text = leaderboard_markdown(results)
    assert "- ppo - sb3-ppo (the same algorithm): +1.000 test reward" in text
    assert "ppo is ahead." in text and "no clear difference (the CI contains 0)." in text


def test_not_learned_marks_collapse_and_reference_overlap():
    refs = [
        {"agent": "untrained", "reward_ci_low": 0.0, "reward_ci_high": 0.05},
        {"agent": "random", "reward_ci_low": 0.0, "reward_ci_high": 0.02},
    ]

    def row(lo, hi, distinct):
        return {"agent": "ppo", "reward_ci_low": lo, "reward_ci_high": hi, "distinct": distinct}

    assert not_learned(row(0.5, 0.7, 0.9), refs) is None
    assert not_learned(row(0.5, 0.7, 0.05), refs) == "collapsed"  # high score, one answer
    assert not_learned(row(0.04, 0.2, 0.9), refs) == "= untrained"  # CIs overlap
    assert not_learned(row(0.03, 0.2, None), refs[1:]) is None
    assert distinct_share(["a", "a", "b", "c"]) == 0.75 and distinct_share([]) is None


def test_peers_are_selectable_agents():
    from benchmarks.__main__ import main

    assert main(["--preset", "quick", "--agents", "sb3-ppo", "trl-grpo", "--list"]) == 0
    with pytest.raises(SystemExit, match="unknown agent"):
        main(["--preset", "quick", "--agents", "sb3ppo", "--list"])


def _tiny_lm_task(**kwargs):
    from benchmarks.presets import TaskSpec

    # TextGen-v0 (SmolLM2's tokenizer) with a tiny random LM: the trl-grpo path in seconds.
    return TaskSpec(
        "TextGen-v0",
        num_envs=4,
        episodes=8,
        eval_episodes=4,
        env_kwargs={"max_new_tokens": 4},
        tiny={"n_layer": 1, "n_embd": 16},
        precision="fp32",
        config={"*": {"lr": 1e-3}, "grpo": {"group_size": 2}},
        **kwargs,
    )


def test_trl_grpo_cell_trains_and_is_evaluated_through_textgym():
    pytest.importorskip("trl")
    import torch

    from benchmarks.harness import run_cell

    torch.set_num_threads(1)
    result = run_cell(_tiny_lm_task(), "trl-grpo", 0)
    assert result["config"]["algorithm"] == "trl.GRPOTrainer"
    # Our GRPO's settings, in TRL's words.
    assert result["config"]["learning_rate"] == 1e-3 and result["config"]["num_generations"] == 2
    assert result["episodes"] == 8 and result["iterations"] == 2
    assert 0 < result["tokens"] <= 8 * 4 and len(result["curve"]) == 2
    assert len(result["scores"]) == 4 and result["eval"]["n_episodes"] == 4
    assert result["eval"]["kl"] is not None and result["eval"]["entropy"] > 0
    assert 0 < result["eval"]["distinct"] <= 1


def test_a_missing_peer_is_skipped_with_a_note(tmp_path, monkeypatch):
    from benchmarks import peers
    from benchmarks.harness import run_benchmark
    from benchmarks.presets import Preset

    monkeypatch.setattr(peers, "missing", lambda agent: "trl is not installed (test)")
    preset = Preset("t", "missing peer", [_tiny_lm_task(agents=["trl-grpo"])], seeds=[0])
    logs = []
    results = run_benchmark(preset, tmp_path, progress=False, trl=False, log=logs.append)
    (task,) = results["tasks"]
    assert task["notes"] == {"trl-grpo": "not run: trl is not installed (test)"}
    assert [r["agent"] for r in task["rows"]] == ["untrained", "random"]
    assert (
        "- trl-grpo: not run: trl is not installed (test)"
        in (tmp_path / "leaderboard.md").read_text()
    )
    assert any("trl-grpo seed 0: skipped" in line for line in logs)


def test_when_no_row_learned_the_leaderboard_and_the_plot_say_so(tiny_bench, monkeypatch):
    import matplotlib.pyplot as plt

    from benchmarks.report import NO_ROW_LEARNED, plot_curves

    out, _ = tiny_bench
    results = json.loads((out / "results.json").read_text())
    (task,) = results["tasks"]
    for row in task["rows"]:
        row["not_learned"] = None if row["agent"] in ("untrained", "random") else "= untrained"
    assert "No row learned at this budget" in leaderboard_markdown(results)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    plot_curves(results, out)
    (ax,) = figures[0].axes
    assert NO_ROW_LEARNED in [t.get_text() for t in ax.texts]
    agents = [line for line in ax.get_lines() if "(n=" in line.get_label()]
    assert len(agents) == 3  # every agent row has its line
    styles = {(line.get_linestyle(), line.get_marker()) for line in agents}
    assert len(styles) == 3  # each its own, so lines on top of each other stay visible
    learned = [r for r in task["rows"] if r["agent"] not in ("untrained", "random")][0]
    learned["not_learned"] = None
    assert "No row learned" not in leaderboard_markdown(results)


def test_eval_time_times_the_same_episodes_with_and_without_the_reference_passes(tmp_path):
    """benchmarks.eval_time alternates evaluate(with_reference=True/False) on the same episodes
    (it stops if their rewards differ) and writes both sides' seconds."""
    from benchmarks import eval_time

    run = ["--env", "TextGen-Copy-v0", "--model", "tiny", "--env-kwargs", "{}", "--num-envs", "4"]
    out = eval_time.main([*run, "--episodes", "8", "--repeats", "2", "--json", str(tmp_path / "t")])
    assert [len(times) for times in out["seconds"].values()] == [2, 2]
    assert json.loads((tmp_path / "t").read_text())["ratio_without_to_with"] > 0
    with pytest.raises(SystemExit, match="--episodes and --repeats"):
        eval_time.main([*run, "--episodes", "0"])

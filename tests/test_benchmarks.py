"""The quality benchmark harness on the `tiny` preset: leaderboard, PNG, results, resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.harness import bootstrap_ci, curve_band, smooth, trl_markdown

CELLS = ["untrained-seed0", "random-seed0", "reinforce-seed0", "grpo-seed0"]


def bench(out, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "textgym.cli", "bench", "--preset", "tiny", "--out", str(out),
         "--no-progress", *extra],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
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
    assert set(rows) == {"reinforce", "grpo", "untrained", "random"}
    for row in rows.values():
        reward = float(row["test reward"])
        lo, hi = (float(x) for x in row["95% CI"].split(".."))
        assert 0.0 <= lo <= reward <= hi <= 1.0
    assert rows["untrained"]["rank"] == rows["random"]["rank"] == "ref"
    assert sorted(rows[a]["rank"] for a in ("reinforce", "grpo")) == ["1", "2"]

    png = (out / "curves-TextGen-Copy-v0.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    results = json.loads((out / "results.json").read_text())
    assert results["versions"]["torch"] and results["machine"]["cores"]
    assert results["preset"]["name"] == "tiny"
    (task,) = results["tasks"]
    grpo = task["cells"]["grpo"][0]
    assert len(grpo["curve"]) == 3  # 24 episodes / 8 envs: one point per iteration
    assert grpo["episodes"] == 24 and grpo["tokens"] > 0 and len(grpo["scores"]) == 16
    assert results["run"]["cells_run"] == 4


def test_an_interrupted_benchmark_runs_only_the_missing_cells(tiny_bench):
    out, _ = tiny_bench
    cells = out / "cells" / "TextGen-Copy-v0"
    # An interruption during the grpo cell: its file was never renamed into place, only a
    # temporary file is left.
    (cells / "grpo-seed0.json").rename(cells / ".grpo-seed0.json.tmp-999")
    kept = {name: (cells / f"{name}.json").stat().st_mtime_ns for name in CELLS[:3]}
    result = bench(out)
    assert result.stdout.count("done before, skipped") == 3
    assert "grpo seed 0: test reward" in result.stdout
    assert "(1 cells run, 3 skipped)" in result.stdout
    assert {n: (cells / f"{n}.json").stat().st_mtime_ns for n in CELLS[:3]} == kept
    assert (cells / "grpo-seed0.json").exists()
    assert "grpo" in parse_leaderboard((out / "leaderboard.md").read_text())


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

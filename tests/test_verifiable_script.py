"""benchmarks/verifiable.py runs end to end (tiny model on Copy); dropping flat groups is the
learners' option, tested in test_drop_flat_groups.py."""

from __future__ import annotations

import json
import math
import re

import pytest

from agents.cli import make_envs
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
            "2",  # prompts: 2 groups of 4 episodes
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


def test_verifiable_script_curriculum_on_reasoning_gym_levels(tmp_path):
    """--curriculum 0,1,2 on an RG-* id moves through reasoning-gym's own curriculum levels of
    the dataset (chain_sum: more terms and digits per level), starting at the first, and
    evaluates the trained policy on the next level and on the highest one reached."""
    pytest.importorskip("reasoning_gym")
    run = ["--recipe", "rg", "--env", "RG-chain_sum-v0", *TINY, "--eval-episodes", "4"]
    run += ["--warm-start-examples", "8", "--curriculum", "0,1,2", "--promote-at", "0"]
    run += ["--curriculum-window", "2", "--env-kwargs", '{"max_new_tokens": 4}']
    result = verifiable.main(run)
    levels = [row[1] for row in result["train"]["curriculum_curve"]]
    assert levels == sorted(levels) and levels[-1] >= 1
    assert result["train"]["level_reached"] in ("level-1", "level-2")
    reached = result["train"]["level_reached"]
    for key in ("after_warm_start", "before_training_level-1", "after_level-1", f"after_{reached}"):
        assert result[key]["sampled"]["n_episodes"] == 4
    # The levels are the dataset's: level 0 asks for sums of two 1-digit numbers, level 2 up to
    # four numbers of up to three digits.
    easy, hard = (
        make_envs("RG-chain_sum-v0", 1, {"task_kwargs": {"difficulty": k}}) for k in (0, 2)
    )
    easy_q = [easy.prompts["test"][k].prompt for k in range(20)]
    hard_q = [hard.prompts["test"][k].prompt for k in range(20)]
    assert all(max(map(len, re.findall(r"\d+", q))) == 1 for q in easy_q)
    assert max(max(map(len, re.findall(r"\d+", q))) for q in hard_q) > 1


def test_verifiable_script_rejects_a_curriculum_outside_the_task():
    with pytest.raises(SystemExit, match="--curriculum"):
        verifiable.main(["--env", "TextGen-Copy-v0", "--curriculum", "easy,hard"])
    with pytest.raises(SystemExit, match="--curriculum"):
        verifiable.main(["--env", "TextGen-WordSorting-Medium-v0", "--curriculum", "easy"])
    with pytest.raises(SystemExit, match="increasing reasoning-gym curriculum levels"):
        verifiable.main(["--env", "RG-chain_sum-v0", "--curriculum", "2,1"])
    with pytest.raises(SystemExit, match="leave difficulty out"):
        kwargs = '{"task_kwargs": {"difficulty": 1}}'
        verifiable.main(["--env", "RG-chain_sum-v0", "--curriculum", "0,1", "--env-kwargs", kwargs])
    with pytest.raises(SystemExit, match="--warm-start-epochs"):
        verifiable.main(["--env", "TextGen-Copy-v0", "--no-untrained"])
    with pytest.raises(SystemExit, match="--trl trains TRL's GRPOTrainer"):
        verifiable.main(["--env", "TextGen-Copy-v0", "--agent", "ppo", "--trl"])


def test_trl_flag_trains_the_peer_from_the_same_warm_start_and_evaluates_it_alike(tmp_path):
    """--trl: TRL's GRPOTrainer trains the warm-started model in place, with our GRPO's
    settings in TRL's words, and the run evaluates it like our learner's."""
    pytest.importorskip("trl")
    pytest.importorskip("reasoning_gym")
    run = ["--recipe", "rg", "--env", "RG-chain_sum-v0", *TINY, "--eval-episodes", "4"]
    run += ["--warm-start-examples", "8", "--lr", "0.5", "--trl"]
    run += ["--env-kwargs", '{"max_new_tokens": 4, "task_kwargs": {"difficulty": 0}}']
    result = verifiable.main(run)
    train = result["train"]
    assert train["learner"] == "trl.GRPOTrainer" and train["updates"] > 0
    assert train["config"]["learning_rate"] == 0.5 and train["config"]["num_generations"] == 4
    assert train["episodes"] > 0 and train["episodes"] % 8 == 0  # steps of 2 prompts x 4
    for key in ("after_warm_start", "after"):
        assert result[key]["sampled"]["n_episodes"] == 4


def test_recipe_rg_runs_warm_start_grpo_and_both_evaluations_on_an_rg_id(tmp_path):
    """--recipe rg is one command for an RG-* id: its flags and env arguments apply, flags given
    on the command line win, and the run evaluates the warm start and the trained policy only."""
    pytest.importorskip("reasoning_gym")
    out = tmp_path / "rg.json"
    run = ["--recipe", "rg", "--env", "RG-letter_counting-v0", *TINY, "--eval-episodes", "8"]
    run += ["--warm-start-examples", "8", "--warm-start-cache", str(tmp_path / "ws")]
    run += ["--env-kwargs", '{"max_new_tokens": 6, "task_kwargs": {"n_test": 50}}']
    result = verifiable.main([*run, "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["args"]["recipe"] == "rg"
    assert saved["args"]["lr"] == 5e-5 and saved["args"]["warm_start_epochs"] == 1  # recipe's
    assert saved["train"]["config"]["group_size"] == 4  # --group-size 4 beats the recipe's 8
    assert "before" not in result  # judged against the warm start, as the recipe says
    for key in ("after_warm_start", "after"):
        for mode in ("sampled", "greedy"):
            figures = saved[key][mode]
            assert figures["n_episodes"] == 8 and "success_rate" in figures
            assert figures["mean_length"] <= 6  # --env-kwargs over the recipe's 48
            assert 0.0 < figures["top_completion_share"] <= 1.0
    for key in ("after_warm_start", "after"):  # the reward gaming check: a constant answer
        constant = saved["constant_answer"][key]
        assert constant["answer"] == saved[key]["sampled"]["top_completion"]
        assert 0.0 <= constant["success"] <= 1.0
    # A second GRPO seed starts from the same warm start: loaded, not trained again.
    second = verifiable.main([*run, "--seed", "1"])
    assert "warm_start_cache" not in saved and second["warm_start_cache"]
    same = json.dumps(second["after_warm_start"]) == json.dumps(result["after_warm_start"])
    assert same  # compared as text: the recipe's --no-eval-kl leaves the KL NaN
    assert math.isnan(result["after_warm_start"]["sampled"]["kl"])
    assert second["train"]["config"]["seed"] == 1
    assert verifiable.recipe_env_kwargs("rg", "RG-gcd-v0", {"task_kwargs": {"seed": 3}}) == {
        **verifiable.RECIPES["rg"]["env_kwargs"],
        "task_kwargs": {"n_test": 1000, "seed": 3},  # merged key by key
    }


def test_recipe_rg_refuses_an_id_outside_reasoning_gym():
    with pytest.raises(SystemExit, match="--recipe rg"):
        verifiable.main(["--recipe", "rg", "--env", "TextGen-Copy-v0"])


def test_constant_answer_success_scores_one_answer_on_every_test_prompt():
    """The reward gaming check: GCDs of random pairs are often 1, so the constant "1" passes
    reasoning-gym's gcd checker on many test prompts, and a junk answer on none."""
    pytest.importorskip("reasoning_gym")
    envs = make_envs("RG-gcd-v0", 1)
    assert verifiable.constant_answer_success(envs, "1", 40) > 0.1
    assert verifiable.constant_answer_success(envs, "Answer: 1", 40) > 0.1  # the answer marker
    assert verifiable.constant_answer_success(envs, "banana", 40) == 0.0


def test_eval_modes_parses_the_decodings_to_evaluate():
    assert verifiable.eval_modes("sampled") == ("sampled",)
    assert verifiable.eval_modes("greedy, sampled,greedy") == ("greedy", "sampled")
    with pytest.raises(SystemExit):  # argparse turns the ArgumentTypeError into a usage error
        verifiable.main(["--env", "TextGen-Copy-v0", "--eval-modes", "beam"])

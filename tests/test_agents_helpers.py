"""Shared setup of the agents tests: a tiny seeded task on the character tokenizer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers TextGen-v0)
from agents import LMPolicy
from textgym.models import tiny_lm
from textgym.tasks import PromptSet, Task

PROMPTS = ["abc", "hello", "xyz", "say a", "aaaa b", "the cat", "dog", "q"]
TEST_PROMPTS = ["test one", "test two", "zz"]
VOCAB = 99  # len(CharTokenizer())


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and steadiest on a busy 2-core machine) on one thread; the
    other agents test modules import this fixture."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fraction_of_a(prompts, completions, references):
    """Fraction of the completion's characters that are 'a': ~0.01 for a random policy."""
    return np.array([t.count("a") / max(len(t), 1) for t in completions], dtype=np.float32)


def a_task() -> Task:
    return Task(
        "frac-a", PromptSet.from_list(PROMPTS, test=TEST_PROMPTS), fraction_of_a, (0.0, 1.0)
    )


def make_envs(num_envs: int = 8, **kwargs) -> gym.vector.VectorEnv:
    options = dict(task=a_task(), tokenizer="char", max_new_tokens=6, max_prompt_tokens=10)
    options.update(kwargs)
    return gym.make_vec("TextGen-v0", num_envs=num_envs, **options)


def make_policy(seed: int = 0, **kwargs) -> LMPolicy:
    model = tiny_lm(vocab_size=VOCAB, n_layer=2, n_embd=64, seed=seed)
    return LMPolicy(model, precision="fp32", **kwargs)


def test_random_policy_scores_low_on_the_task():
    """The learning tests' baseline: an untrained tiny LM almost never writes 'a'."""
    from agents import evaluate

    result = evaluate(make_policy(), make_envs(), n_episodes=32, split="test")
    assert result.reward_mean < 0.1
    assert result.kl == 0.0  # the reference is the untrained policy itself


def test_evaluate_counts_a_verifiable_tasks_outcomes():
    """On an env that labels its episodes (``info["outcome"]``), ``evaluate`` counts the labels
    and reports the share of correct ones apart from the mean reward (partial credit)."""
    from agents import evaluate
    from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
    from textgym.procedural import OUTCOMES, PROCEDURAL_TASKS

    task = PROCEDURAL_TASKS["letter_counting"](difficulty="easy", n_train=20, n_test=20)
    envs = gym.make_vec(
        "TextGen-v0",
        num_envs=4,
        task=task,
        tokenizer=CharTokenizer(DEFAULT_ALPHABET + "\n"),
        max_prompt_tokens=96,
        max_new_tokens=3,
    )
    policy = LMPolicy(tiny_lm(vocab_size=int(envs.single_action_space.n), seed=0), precision="fp32")
    res = evaluate(policy, envs, 10, seed=0, num_samples=10)
    assert sum(res.outcomes.values()) == 10 and set(res.outcomes) <= set(OUTCOMES)
    labels = [s["outcome"] for s in res.samples]
    assert res.success_rate == labels.count("correct") / 10
    for s in res.samples:  # the label agrees with the score the env gave
        assert (s["outcome"] == "correct") == (s["score"] == 1.0)
        assert s["outcome"] not in ("wrong", "format_error") or s["score"] == 0.0
    lo, hi = res.success_ci
    assert 0.0 <= lo <= res.success_rate <= hi <= 1.0
    assert "success_rate" in res.as_dict() and "success" in str(res)

    plain = evaluate(make_policy(), make_envs(2), 4)
    assert plain.outcomes == {} and np.isnan(plain.success_rate)
    assert "success_rate" not in plain.as_dict()


def test_wilson_interval():
    from agents.evaluation import wilson_interval

    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)

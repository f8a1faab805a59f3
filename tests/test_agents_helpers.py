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

"""Shared fixtures: small tasks on the built-in character tokenizer, so most tests are fast."""

from __future__ import annotations

import os

import numpy as np
import pytest

from textgym.tasks import PromptSet, Task

# Under pytest-xdist (`make test` runs `-n 2`) each worker gets one torch thread, and so does
# every process a test starts (through OMP_NUM_THREADS): two workers share the cores instead of
# oversubscribing them. A plain `pytest` run keeps torch's default.
XDIST = "PYTEST_XDIST_WORKER" in os.environ
if XDIST:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_per_worker():
    """Undo a test's own ``torch.set_num_threads`` before the next test of the worker."""
    yield
    if XDIST:
        torch.set_num_threads(1)


def count_a(prompts, completions, references):
    """Fraction of the completion's characters that are 'a' (0 for an empty completion)."""
    return np.array([t.count("a") / max(len(t), 1) for t in completions], dtype=np.float32)


@pytest.fixture
def char_task() -> Task:
    prompts = PromptSet.from_list(
        ["abc", "hello", "xyz", "say a", "aaaa b"], test=["test one", "test two"]
    )
    return Task("count-a", prompts, count_a, reward_range=(0.0, 1.0))


@pytest.fixture
def char_env_kwargs(char_task) -> dict:
    return dict(task=char_task, tokenizer="char", max_new_tokens=6, max_prompt_tokens=10)

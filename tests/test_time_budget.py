"""``learn(time_limit=...)`` does not start an iteration that would overrun the budget, and
``textgym train`` says where the time went. The clock is a fake one: no timed asserts."""

from __future__ import annotations

import gymnasium as gym
import pytest

import agents.base
from agents import REINFORCE, LMPolicy, REINFORCEConfig
from agents.cli import time_spent
from textgym.models import tiny_lm


class FakeClock:
    """``time.perf_counter`` that moves ``seconds`` per iteration, plus a microsecond a read."""

    def __init__(self, seconds: float):
        self.now, self.seconds = 0.0, seconds

    def perf_counter(self) -> float:
        self.now += 1e-6
        return self.now

    def __getattr__(self, name):  # time.time and the rest, for whoever else asks
        import time

        return getattr(time, name)


@pytest.fixture
def slow_learner(monkeypatch):
    envs = gym.make_vec("TextGen-Copy-v0", num_envs=2)
    policy = LMPolicy(tiny_lm(vocab_size=int(envs.single_action_space.n), seed=0), precision="fp32")
    agent = REINFORCE(policy, envs, REINFORCEConfig(progress=False, tensorboard=False))
    clock = FakeClock(78.0)
    monkeypatch.setattr(agents.base, "time", clock)
    step = agent.train_iteration

    def slow_iteration():
        row = step()
        clock.now += clock.seconds
        return row

    monkeypatch.setattr(agent, "train_iteration", slow_iteration)
    return agent, clock


def test_an_iteration_that_would_overrun_the_budget_does_not_start(slow_learner):
    agent, clock = slow_learner
    agent.learn(iterations=10, time_limit=90.0)  # 1.5 minutes, 78 s per iteration
    assert agent.iteration == 1 and clock.now == pytest.approx(78.0)  # not 156 s
    assert agent.iteration_seconds == [pytest.approx(78.0)]
    assert "the next iteration (~78 s) would end at 156 s" in agent.stop_reason


def test_iterations_that_fit_run_until_the_budget(slow_learner):
    agent, clock = slow_learner
    clock.seconds = 10.0
    agent.learn(iterations=100, time_limit=95.0)
    # 9 iterations end at 90 s; a 10th would end at 100 s, within 10% of 95 s: it runs.
    assert agent.iteration == 10 and clock.now == pytest.approx(100.0)
    assert agent.stop_reason == "time limit of 95 s reached"
    text = time_spent(agent, 101.0, 12.5)
    assert text == (
        "time: training 101.0 s = 10 iterations x 10.0 s (longest 10.0 s) + 1.0 s checkpoints; "
        "evaluation 12.5 s"
    )

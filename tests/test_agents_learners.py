"""The learners: each learns a seeded small task; checkpoint/resume; NaN policy; logging."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import (
    A2C,
    GRPO,
    PPO,
    REINFORCE,
    RLOO,
    A2CConfig,
    GRPOConfig,
    NonFiniteError,
    PPOConfig,
    REINFORCEConfig,
    RLOOConfig,
    collect_rollout,
    discounted_returns,
    evaluate,
    gae,
    group_advantages,
)
from agents.evaluation import distinct_n
from textgym.char_tokenizer import EOS_ID

# The task: make the completion (6 chars) consist of 'a' (reward = fraction of 'a', in [0, 1]).
# An untrained tiny LM scores ~0.02. Each learner gets 30 iterations x 8 episodes at a high
# learning rate (tiny model); the bar is the trained policy's test reward >= untrained + MARGIN.
MARGIN = 0.3
ITERATIONS = 30
COMMON = dict(lr=3e-3, seed=0, progress=False, kl_coef=0.0)
LEARNERS = {
    "REINFORCE-moving-average": (REINFORCE, REINFORCEConfig(**COMMON)),
    "REINFORCE-loo": (REINFORCE, REINFORCEConfig(baseline="loo", **COMMON)),
    "A2C": (A2C, A2CConfig(**COMMON)),
    "PPO": (PPO, PPOConfig(**{**COMMON, "kl_coef": 0.001}, minibatch_size=4)),
    "GRPO": (GRPO, GRPOConfig(**{**COMMON, "kl_coef": 0.001}, group_size=4)),
    "RLOO": (RLOO, RLOOConfig(**COMMON, group_size=4)),
}


@pytest.fixture(scope="module")
def untrained_reward() -> float:
    return evaluate(make_policy(), make_envs(), n_episodes=48, split="test", seed=1).reward_mean


@pytest.mark.parametrize("name", list(LEARNERS))
def test_learner_beats_the_untrained_policy(name, untrained_reward):
    cls, config = LEARNERS[name]
    agent = cls(make_policy(), make_envs(), config)
    agent.learn(iterations=ITERATIONS)
    trained = evaluate(agent, make_envs(), n_episodes=48, split="test", seed=1)
    assert untrained_reward < 0.1
    assert trained.reward_mean >= untrained_reward + MARGIN, (
        f"{name}: {untrained_reward:.3f} -> {trained.reward_mean:.3f}"
    )
    assert agent.skipped_updates == 0
    assert trained.kl > 0  # it moved away from the reference


def test_baseline_none_and_reward_threshold_stop():
    config = REINFORCEConfig(**{**COMMON, "lr": 1e-2}, baseline="none", reward_threshold=0.5)
    agent = REINFORCE(make_policy(), make_envs(), config)
    agent.learn(iterations=60)
    assert agent.stop_reason is not None and "threshold" in agent.stop_reason
    assert agent.iteration < 60
    assert agent.history[-1]["reward"] >= 0.5


# -- checkpoint / resume -------------------------------------------------------------------------


def _ppo(tmp_path, **kwargs) -> PPO:
    config = PPOConfig(
        **{**COMMON, "kl_coef": 0.01},
        minibatch_size=4,
        adaptive_kl=True,
        checkpoint_dir=str(tmp_path / "ckpt"),
        **kwargs,
    )
    return PPO(make_policy(), make_envs(), config)


def test_resume_equals_straight_run(tmp_path):
    straight = _ppo(tmp_path / "a")
    straight.learn(iterations=4)

    first = _ppo(tmp_path / "b")
    first.learn(iterations=2)  # saves a checkpoint at the end of learn
    del first
    resumed = _ppo(tmp_path / "b").resume(tmp_path / "b" / "ckpt")  # fresh objects
    assert resumed.iteration == 2
    resumed.learn(iterations=2)

    assert resumed.iteration == straight.iteration == 4
    assert resumed.episodes == straight.episodes
    assert resumed.kl_coef == straight.kl_coef
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.history[2:], resumed.history):
        assert a["reward"] == b["reward"] and a["loss"] == b["loss"]


def test_checkpoint_layout_is_safe(tmp_path):
    agent = _ppo(tmp_path, keep_checkpoints=2, checkpoint_every=1)
    agent.learn(iterations=3)
    root = tmp_path / "ckpt"
    names = sorted(p.name for p in root.iterdir())
    assert names == ["iter-000002", "iter-000003", "latest"]  # pruned, no temporaries
    assert (root / "latest").read_text() == "iter-000003"
    folder = root / "iter-000003"
    assert {p.name for p in folder.iterdir()} == {
        "model.safetensors",
        "optimizer.pt",
        "rng.safetensors",
        "state.json",
    }
    torch.load(folder / "optimizer.pt", weights_only=True)  # no arbitrary unpickling needed
    state = json.loads((folder / "state.json").read_text())
    assert state["iteration"] == 3 and state["learner"] == "PPO"
    with pytest.raises(ValueError, match="PPO"):
        A2C(make_policy(), make_envs(), A2CConfig(**COMMON)).resume(root)


# -- non-finite values ---------------------------------------------------------------------------


def _poison(agent) -> None:
    with torch.no_grad():
        agent.policy.value_head.bias.fill_(float("nan"))  # NaN values -> NaN loss


def test_nonfinite_loss_is_skipped_and_reported():
    agent = A2C(make_policy(), make_envs(), A2CConfig(**COMMON))
    _poison(agent)
    before = [p.detach().clone() for p in agent.policy.model.parameters()]
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        agent.learn(iterations=2)
    assert agent.skipped_updates == 2
    assert agent.history[-1]["skipped_updates"] == 2
    for a, b in zip(before, agent.policy.model.parameters()):
        assert torch.equal(a, b)  # nothing reached the weights


def test_nonfinite_loss_can_stop_training():
    agent = A2C(make_policy(), make_envs(), A2CConfig(**COMMON, on_nonfinite="raise"))
    _poison(agent)
    with pytest.raises(NonFiniteError, match="non-finite loss at iteration 1"):
        agent.learn(iterations=2)


def test_nonfinite_gradient_is_skipped():
    agent = REINFORCE(make_policy(), make_envs(), REINFORCEConfig(**COMMON))
    # A hook turning one gradient into NaN: the loss is finite, the gradient norm is not.
    agent.policy.model.lm_head.weight.register_hook(lambda g: g * float("nan"))
    with pytest.warns(RuntimeWarning, match="non-finite gradient"):
        agent.learn(iterations=1)
    assert agent.skipped_updates == 1


# -- logging, evaluation, early stopping ---------------------------------------------------------


def test_csv_tensorboard_and_patience(tmp_path):
    pytest.importorskip("tensorboard")
    config = PPOConfig(
        **{**COMMON, "lr": 0.0},
        log_dir=str(tmp_path / "logs"),
        eval_every=1,
        eval_episodes=8,
        patience=1,
        update_epochs=1,
    )
    agent = PPO(make_policy(), make_envs(), config, eval_envs=make_envs())
    agent.learn(iterations=10)  # lr 0: the eval reward cannot improve after the first eval
    assert agent.iteration == 2 and "did not improve" in agent.stop_reason
    lines = (tmp_path / "logs" / "progress.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in (
        "reward",
        "kl",
        "entropy",
        "pg_loss",
        "vf_loss",
        "clip_frac",
        "tokens_per_s",
        "eval_reward",
    ):
        assert column in header
    assert len(lines) == 3
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_evaluate_reports_everything():
    result = evaluate(make_policy(), make_envs(4), n_episodes=10, split="test", num_samples=3)
    assert result.n_episodes == 10
    lo, hi = result.reward_ci
    assert lo <= result.reward_mean <= hi
    assert math.isfinite(result.perplexity) and result.perplexity > 1
    assert 0 <= result.distinct_1 <= 1 and 0 <= result.distinct_2 <= 1
    assert len(result.samples) == 3 and result.table().startswith("| prompt |")
    assert all(s["prompt"] in ("test one", "test two", "zz") for s in result.samples)
    assert set(result.as_dict()) >= {"reward_mean", "kl", "perplexity", "distinct_1"}


def test_evaluate_without_reference_figures_plays_the_same_episodes():
    """with_reference=False skips the KL and perplexity passes: the same episodes and scores
    (the figures that need no reference), NaN for the two it skips."""
    policy, envs = make_policy(), make_envs(4)
    full = evaluate(policy, envs, n_episodes=10, seed=3, num_samples=10)
    fast = evaluate(policy, envs, n_episodes=10, seed=3, num_samples=10, with_reference=False)
    assert [s["completion"] for s in fast.samples] == [s["completion"] for s in full.samples]
    assert fast.reward_mean == full.reward_mean and fast.reward_ci == full.reward_ci
    assert math.isfinite(full.kl) and math.isfinite(full.perplexity)
    assert math.isnan(fast.kl) and math.isnan(fast.perplexity)
    with_entropy = evaluate(policy, envs, 10, seed=3, with_entropy=True, with_reference=False)
    assert math.isfinite(with_entropy.entropy) and with_entropy.entropy > 0


def test_distinct_n():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n([""], 2) == 0.0


# -- rollouts and advantages ---------------------------------------------------------------------


def test_groups_share_a_prompt():
    agent = GRPO(make_policy(), make_envs(8), GRPOConfig(**COMMON, group_size=4))
    ro = collect_rollout(agent.policy, agent.envs, seeds=agent._rollout_seeds())
    assert ro.prompts[:4] == [ro.prompts[0]] * 4 and ro.prompts[4:] == [ro.prompts[4]] * 4
    assert torch.equal(ro.input_ids[0, : ro.prompt_len], ro.input_ids[3, : ro.prompt_len])
    with pytest.raises(ValueError, match="multiple of group_size"):
        GRPO(make_policy(), make_envs(6), GRPOConfig(**COMMON, group_size=4))


def test_rollout_works_with_same_step_autoreset():
    ro = collect_rollout(
        make_policy(),
        make_envs(4, autoreset_mode="SameStep"),
        seeds=[0, 1, 2, 3],
        generator=torch.Generator().manual_seed(0),
    )
    assert ro.mask.any(1).all()
    # One character per token (char tokenizer); a final EOS adds a token but no text.
    for i, (text, n) in enumerate(zip(ro.completions, ro.lengths.tolist())):
        ended_with_eos = int(ro.input_ids[i, ro.prompt_len + n - 1]) == EOS_ID
        assert len(text) == n - ended_with_eos


def test_advantage_estimators():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    returns = discounted_returns(rewards, mask, gamma=0.5)
    torch.testing.assert_close(returns, torch.tensor([[0.25, 0.5, 1.0], [1.0, 2.0, 0.0]]))
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    torch.testing.assert_close(adv, returns - values * mask)  # lambda = 1: Monte-Carlo
    torch.testing.assert_close(ret, returns)
    adv0, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)  # lambda = 0: one-step TD
    torch.testing.assert_close(adv0[0], torch.tensor([0.2 - 0.1, 0.3 - 0.2, 1.0 - 0.3]))
    scores = torch.tensor([1.0, 2.0, 3.0, 6.0])
    torch.testing.assert_close(
        group_advantages(scores, 2, "mean"), torch.tensor([-0.5, 0.5, -1.5, 1.5])
    )
    torch.testing.assert_close(
        group_advantages(scores, 2, "loo"), torch.tensor([-1.0, 1.0, -3.0, 3.0])
    )
    assert np.allclose(group_advantages(scores, 4, "mean", scale=True).std().item(), 1.0, atol=1e-3)


# -- learning to read the prompt (from scratch, the tiny model's defaults) ------------------------


def copy_envs(num_envs: int) -> gym.vector.VectorEnv:
    """Copy a 2-4 character string over "abcd": the answer depends on the prompt."""
    from textgym.task_suite import copy as copy_task

    task = copy_task(alphabet="abcd", min_len=2, max_len=4)
    return gym.make_vec(
        "TextGen-v0", num_envs=num_envs, task=task, tokenizer="char", max_new_tokens=5
    )


@pytest.fixture(scope="module")
def best_constant_score() -> float:
    """The test score of the best constant completion (chosen knowing the test strings): what
    a policy that ignores its prompt can reach at most."""
    import itertools

    from textgym.task_suite import copy as copy_task

    task = copy_task(alphabet="abcd", min_len=2, max_len=4)
    rows = task.prompts.splits["test"]
    prompts, refs = [r.prompt for r in rows], [r.reference for r in rows]
    candidates = ("".join(c) for n in range(1, 6) for c in itertools.product("abcd", repeat=n))
    return max(float(np.mean(task.scorer(prompts, [c] * len(rows), refs))) for c in candidates)


# Updates per learner: 40 of 256 episodes (LMPolicy.tiny's defaults); A2C takes one gradient
# step per rollout of 64 episodes, so it gets 320 (twice the episodes: it is the weakest).
READ_THE_PROMPT_UPDATES = {
    "ppo": 40,
    "grpo": 40,
    "rloo": 40,
    "reinforce": 40,
    "nlpo": 40,
    "a2c": 320,
}


@pytest.mark.parametrize("name", list(READ_THE_PROMPT_UPDATES))
def test_learner_learns_to_read_the_prompt(name, best_constant_score):
    """With LMPolicy.tiny's defaults: the greedy test score beats the best constant completion
    clearly, and the completions differ across prompts."""
    from agents import LEARNERS, LMPolicy

    envs = copy_envs(64)
    policy = LMPolicy.tiny(envs, precision="fp32")
    agent = LEARNERS[name](policy, envs, LEARNERS[name].Config.for_policy(policy, progress=False))
    agent.learn(iterations=READ_THE_PROMPT_UPDATES[name])
    result = evaluate(agent, copy_envs(33), n_episodes=66, split="test", deterministic=True)
    completions = {s["completion"] for s in result.samples}
    assert best_constant_score < 0.4
    assert result.reward_mean >= best_constant_score + 0.1, (
        f"{name}: {result.reward_mean:.3f} vs best constant {best_constant_score:.3f}"
    )
    assert len(completions) > 1


@pytest.mark.parametrize("name", sorted(["a2c", "grpo", "nlpo", "ppo", "reinforce", "rloo"]))
def test_a_learner_without_a_config_takes_the_policys_defaults(name):
    """One route for defaults: every learner built without a config uses
    ``Config.for_policy(policy)``, so LMPolicy.tiny's learner defaults apply to all of them."""
    from agents import LEARNERS, LMPolicy
    from agents.policy import TINY_LEARNER_DEFAULTS

    envs = copy_envs(4)
    policy = LMPolicy.tiny(envs, precision="fp32")
    agent = LEARNERS[name](policy, envs)
    assert agent.config == LEARNERS[name].Config.for_policy(policy)
    assert agent.config.lr == TINY_LEARNER_DEFAULTS["lr"] != LEARNERS[name].Config().lr

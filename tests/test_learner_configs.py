"""Learner configs are validated in one place (``check()``, run by ``__post_init__`` and again by
the learner) and built by one route (``Config.for_policy``)."""

from __future__ import annotations

import pytest
from test_agents_helpers import make_envs, make_policy, one_thread  # noqa: F401

from agents import A2C, GRPO, NLPO, PPO, REINFORCE, RLOO, LMPolicy
from textgym.errors import InvalidArgumentError

BAD = [
    (PPO, {"update_epochs": 0}, "update_epochs must be an integer >= 1, got 0"),
    (PPO, {"minibatch_size": 2.5}, "minibatch_size must be an integer >= 1"),
    (PPO, {"on_nonfinite": "ignore"}, "on_nonfinite must be one of"),
    (PPO, {"adaptive_kl": True, "adaptive_kl_target": 0.0}, "adaptive_kl_target must be > 0"),
    (A2C, {"kl_estimator": "k4"}, "kl_estimator must be one of"),
    (REINFORCE, {"baseline": "median"}, "baseline must be one of"),
    (REINFORCE, {"max_failure_rate": 1.5}, "max_failure_rate must be a number in"),
    (GRPO, {"group_size": 1}, "group_size must be >= 2"),
    (GRPO, {"loss_type": "seq"}, "loss_type must be one of"),
    (GRPO, {"loss_type": "dr_grpo", "scale_rewards": True}, "set scale_rewards=False"),
    (RLOO, {"max_extra_rollouts": -1}, "max_extra_rollouts must be an integer >= 0"),
    (NLPO, {"nlpo_top_p": 0.0}, "nlpo_top_p must be in"),
]


@pytest.mark.parametrize(("cls", "settings", "message"), BAD, ids=lambda x: str(x)[:30])
def test_a_bad_setting_is_refused_when_the_config_is_made(cls, settings, message):
    with pytest.raises(InvalidArgumentError, match=message) as error:
        cls.Config(**settings)
    assert str(error.value).startswith(f"{cls.Config.__name__}: ")


def test_a_config_changed_after_it_was_made_is_checked_again_by_the_learner():
    config = PPO.Config(progress=False)
    config.update_epochs = 0
    policy = make_policy()
    with pytest.raises(InvalidArgumentError, match="update_epochs must be an integer >= 1"):
        PPO(policy, make_envs(), config)
    assert policy.ref_model is None  # refused before the reference copy was taken


@pytest.mark.parametrize("cls", [PPO, GRPO, RLOO, REINFORCE, NLPO])
def test_one_route_for_defaults_the_policys_learner_defaults(cls):
    envs = make_envs(8)
    policy = LMPolicy.tiny(envs)
    agent = cls(policy, envs)
    for key, value in policy.learner_defaults.items():
        if hasattr(agent.config, key):
            assert getattr(agent.config, key) == value, key


def test_a_renamed_setting_names_its_new_name():
    with pytest.raises(InvalidArgumentError, match="no setting 'kl_target' .*adaptive_kl_target"):
        PPO.Config.for_policy(make_policy(), kl_target=3.0)
    with pytest.raises(InvalidArgumentError, match="whiten_advantages"):
        PPO.Config.for_policy(make_policy(), normalize_advantages=False)

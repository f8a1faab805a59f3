"""Every environment id textgym registers passes the same conformance checks.

New ids are covered as soon as they are registered: the tests loop over
``textgym.registered_ids()``.
"""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from registered import IDS, make, make_vec
from stable_baselines3.common.env_checker import check_env as sb3_check_env


def test_registry_lists_every_id():
    assert "TextGen-v0" in IDS
    for env_id in IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = make(env_id).unwrapped
    gym_check_env(env, skip_render_check=False)


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id):
    env = make(env_id).unwrapped
    sb3_check_env(env, warn=True)


def _actions(env, n: int, seed: int, p_eos: float = 0.1) -> list[int]:
    """Random token ids with some EOS mixed in, so episodes have different lengths."""
    rng = np.random.default_rng(seed)
    eos = env.unwrapped.tokenizer.eos_token_id
    ids = rng.integers(env.action_space.n, size=n)
    return [eos if rng.random() < p_eos else int(a) for a in ids]


def _rollout(env, actions, seed):
    data = []
    obs, info = env.reset(seed=seed)
    data.append((obs, info))
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        data.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            obs, info = env.reset()
            data.append((obs, info))
    return data


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype == object:
            for x, y in zip(a.tolist(), b.tolist()):
                _assert_same(x, y)
        else:
            np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("env_id", IDS)
def test_seeded_rollout_is_deterministic(env_id):
    env = make(env_id)
    actions = _actions(env, 50, seed=1)
    first = _rollout(env, actions, seed=7)
    second = _rollout(make(env_id), actions, seed=7)
    _assert_same(first, second)
    assert sum(1 for step in first if len(step) == 2) >= 2  # at least one episode ended


@pytest.mark.parametrize("env_id", IDS)
def test_pickle_and_deepcopy_round_trip(env_id):
    for make_clone in (lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy):
        env = make(env_id).unwrapped
        env.reset(seed=3)
        actions = _actions(env, 5, seed=2, p_eos=0.0)
        for a in actions[:2]:
            env.step(a)
        clone = make_clone(env)
        # The clone continues exactly as the original does.
        for a in actions[2:]:
            _assert_same(clone.step(a), env.step(a))


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_env_equals_single_envs(env_id, mode):
    n = 4
    native = make_vec(env_id, n, autoreset_mode=mode)
    assert type(native.unwrapped).__name__.endswith("VectorEnv")
    assert not isinstance(native.unwrapped, SyncVectorEnv)
    reference = SyncVectorEnv([lambda: make(env_id) for _ in range(n)], autoreset_mode=mode)
    _assert_same(native.reset(seed=11), reference.reset(seed=11))
    rng = np.random.default_rng(0)
    eos = native.unwrapped.tokenizer.eos_token_id
    for _ in range(60):
        actions = rng.integers(native.single_action_space.n, size=n)
        actions[rng.random(n) < 0.1] = eos
        _assert_same(native.step(actions), reference.step(actions))

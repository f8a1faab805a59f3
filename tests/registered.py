"""The registered ids the conformance tests loop over, and how they build each one.

Every id is covered. A reasoning-gym id (``RG-*``, with the ``reasoning`` extra) is built from
a small sample of its dataset (8 train and 4 test questions): its env is the same, only the
prompt bank is shorter, so the suite runs over all hundred-odd datasets in minutes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import textgym

IDS = textgym.registered_ids()
REASONING_GYM_IDS = [i for i in IDS if i.startswith("RG-")]
SAMPLE = {"n_train": 8, "n_test": 4}


def kwargs_for(env_id: str) -> dict[str, Any]:
    """Extra ``gym.make`` arguments the tests build ``env_id`` with."""
    if env_id not in REASONING_GYM_IDS:
        return {}
    task_kwargs = gym.spec(env_id).kwargs["task_kwargs"]
    return {"task_kwargs": {**task_kwargs, **SAMPLE}}


def make(env_id: str, **kwargs: Any) -> gym.Env:
    return gym.make(env_id, **{**kwargs_for(env_id), **kwargs})


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(env_id, num_envs=num_envs, **{**kwargs_for(env_id), **kwargs})

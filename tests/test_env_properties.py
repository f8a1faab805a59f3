"""Property-based tests of the environment API (hypothesis).

Random sequences of resets (seeds, option dicts, bad types) and steps (valid ids, out-of-range
ids, floats, strings, arrays) are played on an environment and on a shadow copy that only
receives the calls that succeeded. Every call either succeeds or raises one of the documented
errors with a message, and a rejected call changes nothing: the two environments stay identical.
"""

from __future__ import annotations

import copy

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textgym import TextGenEnv, TextGenVectorEnv
from textgym.errors import EmptyPromptSetError, InvalidTokenError
from textgym.tasks import PromptSet, Task

EXPECTED_ERRORS = (
    InvalidTokenError,
    gymnasium.error.ResetNeeded,
    gymnasium.error.Error,
    EmptyPromptSetError,
    ValueError,
    TypeError,
)


def _score_a(prompts, completions, references):
    return np.array([t.count("a") / max(len(t), 1) for t in completions], dtype=np.float32)


TASK = Task("props", PromptSet.from_list(["abc", "hello", "xyz"], test=["t1", "t2"]), _score_a)
KWARGS = dict(task=TASK, tokenizer="char", max_new_tokens=4, max_prompt_tokens=8)

actions = st.one_of(
    st.integers(min_value=0, max_value=98),  # valid ids, EOS (2) included
    st.integers(min_value=-5, max_value=200),
    st.floats(allow_nan=True),
    st.text(max_size=2),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 98), max_size=3),
)
options = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional={"split": st.sampled_from(["train", "test", "dev", 3])}),
    st.fixed_dictionaries({"prompt": st.one_of(st.text(max_size=12), st.integers(), st.none())}),
    st.dictionaries(st.sampled_from(["splt", "seed", "prompt_id"]), st.integers(), min_size=1),
)
seeds = st.one_of(st.none(), st.integers(0, 2**16), st.integers(-3, -1), st.text(max_size=2))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("reset"), seeds, options),
        st.tuples(st.just("step"), actions),
    ),
    max_size=40,
)


def _same(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, np.ndarray) and a.dtype == object:
        _same(a.tolist(), b.tolist())
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def _call(env, op):
    if op[0] == "reset":
        return env.reset(seed=op[1], options=op[2])
    return env.step(op[1])


@pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_single_env_survives_any_call_sequence(ops):
    env, shadow = TextGenEnv(**KWARGS), TextGenEnv(**KWARGS)
    _same(env.reset(seed=0), shadow.reset(seed=0))  # same RNG state for reset(seed=None)
    for op in ops:
        try:
            result = _call(env, op)
        except EXPECTED_ERRORS as e:
            assert str(e), f"{type(e).__name__} without a message for {op!r}"
            continue
        _same(result, _call(shadow, op))  # the shadow never saw the rejected calls
        obs = result[0]
        assert env.observation_space.contains(obs)
        if op[0] == "step":
            assert np.isfinite(result[1])


vector_actions = st.one_of(
    st.lists(st.integers(0, 98), min_size=3, max_size=3).map(np.array),
    st.lists(st.integers(-2, 120), min_size=3, max_size=3).map(np.array),
    st.lists(st.integers(0, 98), min_size=1, max_size=4).map(np.array),
    st.lists(st.floats(0, 5), min_size=3, max_size=3).map(np.array),
)
vector_options = st.one_of(
    options,
    st.fixed_dictionaries(
        {"reset_mask": st.lists(st.booleans(), min_size=3, max_size=3).map(np.array)}
    ),
    st.fixed_dictionaries({"prompt": st.lists(st.text(max_size=5), min_size=1, max_size=4)}),
)
vector_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("reset"),
            st.one_of(seeds, st.lists(st.integers(0, 9), min_size=3, max_size=3)),
            vector_options,
        ),
        st.tuples(st.just("step"), vector_actions),
    ),
    max_size=30,
)


@pytest.mark.filterwarnings("ignore:.*longer than max_prompt_tokens")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=vector_operations, mode=st.sampled_from(["NextStep", "SameStep"]))
def test_vector_env_survives_any_call_sequence(ops, mode):
    envs = TextGenVectorEnv(num_envs=3, autoreset_mode=mode, **KWARGS)
    envs.reset(seed=0)
    shadow = copy.deepcopy(envs)
    for op in ops:
        try:
            result = _call(envs, op)
        except EXPECTED_ERRORS as e:
            assert str(e), f"{type(e).__name__} without a message for {op!r}"
            continue
        _same(result, _call(shadow, op))
        assert envs.observation_space.contains(result[0])

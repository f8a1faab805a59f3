"""Property-based tests of the environment API (hypothesis).

Random sequences of resets (seeds, option dicts, bad types) and steps (valid ids, out-of-range
ids, floats, strings, arrays) are played on an environment and on a shadow copy that only
receives the calls that succeeded. Every call either succeeds or raises one of the documented
errors with a message, and a rejected call changes nothing: the two environments stay identical.
"""

from __future__ import annotations

import copy
import warnings

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registered import IDS as REGISTERED
from registered import REASONING_GYM_IDS, make, make_vec

import textgym
from textgym import TextGenEnv, TextGenVectorEnv
from textgym.errors import EmptyPromptSetError, InvalidTokenError, TextgymError
from textgym.tasks import PromptSet, Task

# Every rejected call raises a textgym error (InvalidTokenError, InvalidArgumentError,
# ResetNeeded, EmptyPromptSetError, ScorerError, ...): nothing else counts as "handled".
EXPECTED_ERRORS = (TextgymError,)
assert issubclass(InvalidTokenError, TextgymError) and issubclass(EmptyPromptSetError, TextgymError)
assert issubclass(textgym.errors.ResetNeeded, gymnasium.error.ResetNeeded)


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


# -- every registered id, with scorer / partner failures injected --------------------------------
#
# The environment under test and a reference copy start identical; the tested one also receives
# invalid calls (bad seeds and seed lists, non-dict options, prompts of the wrong type or that
# the tokenizer cannot encode, bad actions) and scorer (or dialogue partner) failures injected
# into its next call. After every rejected call the two must give identical results, and at the
# end identical futures: new episodes drawn with seed=None (the prompts the RNGs draw next), their
# observations, rewards and infos.

# The properties are checked on every id but the reasoning-gym ones, and on a sample of those
# (the conformance suite covers them all).
IDS = [i for i in REGISTERED if i not in REASONING_GYM_IDS] + REASONING_GYM_IDS[::25]
N = 3  # vector slots


class _Fail:
    """Wraps a scorer or a partner: once armed, its next call raises (a reward server that
    timed out once)."""

    def __init__(self, fn):
        self.fn, self.armed = fn, False
        if hasattr(fn, "score_with_outcomes"):  # a checker: its labelled call fails the same way
            self.score_with_outcomes = lambda *args: self._call(fn.score_with_outcomes, args)

    def __call__(self, *args):
        return self._call(self.fn, args)

    def _call(self, fn, args):
        if self.armed:
            self.armed = False
            raise RuntimeError("injected failure: the reward server timed out")
        return fn(*args)


_ENVS: dict = {}


def _pair(env_id: str, vector: bool):
    """(env under test, reference) for an id, built once per module; the tested one's scorer
    (or partner) is wrapped in a _Fail."""
    key = (env_id, vector)
    if key not in _ENVS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = make_vec(env_id, N) if vector else make(env_id).unwrapped
        reference = copy.deepcopy(env)
        core = env.core
        if hasattr(core, "partner"):
            core.partner = _Fail(core.partner)
            fail = core.partner
        else:
            core.scorer = _Fail(core.scorer)
            fail = core.scorer
        _ENVS[key] = (env, reference, fail)
    return _ENVS[key]


def _bad_seeds(vector: bool):
    bad = st.one_of(st.integers(-5, -1), st.text(max_size=2), st.floats(), st.just([1]))
    good = st.one_of(st.none(), st.integers(0, 2**16), st.integers(0, 99).map(np.int64))
    if vector:
        good = st.one_of(
            good, st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=N, max_size=N)
        )
        # One bad entry among good ones: the old code had re-seeded the slots before it.
        bad = st.one_of(bad, st.tuples(st.integers(0, 9), st.integers(0, 9), bad).map(list))
    return st.one_of(good, bad)


def _options(vector: bool, dialogue: bool):
    episode = "secret" if dialogue else "prompt"
    one = st.one_of(st.text(max_size=6), st.integers(), st.floats(), st.just(["x"]))
    if dialogue:
        one = st.one_of(st.integers(-2, 30), st.sampled_from(["cat", "zzz", "dog"]), st.none())
    many = st.lists(one, min_size=N - 1, max_size=N + 1) if vector else one
    return st.one_of(
        st.none(),
        st.fixed_dictionaries({}, optional={"split": st.sampled_from(["train", "test", "dev", 3])}),
        st.fixed_dictionaries({episode: st.one_of(one, many)}),
        st.builds(lambda k, v: {k: v}, st.sampled_from(["splt", "seed", 5]), st.integers()),
        st.just([("split", "test")]),  # not a dict
        st.just("test"),
    )


def _actions(vector: bool, vocab: int):
    valid = st.integers(0, 2**31).map(lambda a: a % vocab)
    if vector:
        good = st.lists(valid, min_size=N, max_size=N).map(np.array)
        bad = st.one_of(
            st.lists(valid, min_size=1, max_size=N + 1).map(np.array),
            st.lists(st.integers(-3, vocab + 3), min_size=N, max_size=N).map(np.array),
            st.lists(st.floats(0, 5), min_size=N, max_size=N).map(np.array),
        )
    else:
        good = st.one_of(valid, valid.map(np.int64))
        bad = st.one_of(
            st.integers(-3, -1),
            st.integers(vocab, vocab + 3),
            st.floats(),
            st.text(max_size=2),
            st.none(),
            st.booleans(),
        )
    return st.one_of(good, good, bad)


@st.composite
def _programs(draw, env_id: str, vector: bool):
    env, _, _ = _pair(env_id, vector)
    vocab = int((env.single_action_space if vector else env.action_space).n)
    dialogue = env_id.startswith("TextDialogue")
    op = st.one_of(
        st.tuples(st.just("reset"), _bad_seeds(vector), _options(vector, dialogue)),
        st.tuples(st.just("step"), _actions(vector, vocab)),
        st.tuples(st.just("step"), _actions(vector, vocab)),
        st.tuples(st.just("fail")),
    )
    return draw(st.lists(op, max_size=25))


def _future(env, vector: bool) -> list:
    """Two more episodes per slot with seed=None: prompts drawn, observations, rewards, infos."""
    out = [env.reset()]
    if vector:
        for _ in range(120):
            out.append(env.step(np.full(N, 5)))
        return out
    for _ in range(2):
        done = False
        while not done:
            out.append(env.step(5))
            done = out[-1][2] or out[-1][3]
        out.append(env.reset())
    return out


@pytest.mark.parametrize("vector", [False, True], ids=["single", "vector"])
@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.filterwarnings("ignore")
@settings(
    max_examples=6,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_rejected_calls_change_nothing_for_every_id(env_id, vector, data):
    env, reference, fail = _pair(env_id, vector)
    fail.armed = False
    start = {"seed": 0, "options": {"split": "train"}}
    _same(env.reset(**start), reference.reset(**start))
    for op in data.draw(_programs(env_id, vector)):
        if op[0] == "fail":
            fail.armed = True
            continue
        try:
            result = _call(env, op)
        except EXPECTED_ERRORS as e:
            assert str(e), f"{type(e).__name__} without a message for {op!r}"
            continue
        _same(result, _call(reference, op))
    fail.armed = False
    _same(_future(env, vector), _future(reference, vector))

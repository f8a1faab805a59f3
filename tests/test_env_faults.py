"""Fault injection and bad input at the environment's edges.

Scorers that fail once, fail forever, return NaN or non-numbers, or hang past ``scorer_timeout``;
resets that refuse one of their seeds or prompts; constructor arguments of the wrong type or an
absurd size. Each ends in a clear textgym error that changed nothing (so a retry continues
exactly as if the failure had never happened), and the ecosystem's defaults (SB3) work.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym
from textgym import TextGenEnv, TextGenVectorEnv
from textgym.envs import DialogueEnv, ToolUseEnv
from textgym.errors import (
    InvalidArgumentError,
    ScorerError,
    ScorerTimeoutError,
    TextgymError,
)
from textgym.tasks import Example, PromptSet, Task
from textgym.tools import Calculator


def _score(prompts, completions, references):
    return np.array([t.count("a") / max(len(t), 1) for t in completions], dtype=np.float32)


TASK = Task("faults", PromptSet.from_list(["abc", "hello", "xyz", "say a"]), _score)
KW = dict(task=TASK, tokenizer="char", max_new_tokens=3, max_prompt_tokens=8, stop_on_eos=False)


class Flaky:
    """A scorer whose calls listed in ``fail_on`` (1-based) raise, or all calls once broken."""

    def __init__(self, fail_on=(), forever=False, value=None):
        self.calls, self.fail_on, self.forever, self.value = 0, set(fail_on), forever, value

    def __call__(self, prompts, completions, references):
        self.calls += 1
        if self.forever or self.calls in self.fail_on:
            raise TimeoutError("reward server timed out")
        if self.value is not None:
            return self.value(completions)
        return _score(prompts, completions, references)


def _step(env, action, vector):
    """One step (single env: a reset after the episode's end, as an agent's loop does)."""
    if vector:
        return env.step(np.full(env.num_envs, action))
    if env.unwrapped._needs_reset:
        return env.reset()
    return env.step(action)


def _play(env, actions, vector=False):
    return [env.reset(seed=3)] + [_step(env, a, vector) for a in actions]


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.tolist() == b.tolist()
    else:
        assert a == b


@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("vector", [False, True])
def test_scorer_that_fails_once_is_retried_exactly(mode, vector):
    make = (lambda **k: TextGenVectorEnv(num_envs=2, **k)) if vector else TextGenEnv
    clean = make(**KW, reward_mode=mode)
    expected = _play(clean, [37, 38, 37, 39, 37, 37, 38], vector)
    for failing_call in range(1, 8):
        flaky = Flaky(fail_on={failing_call})
        env = make(**{**KW, "scorer": flaky}, reward_mode=mode)
        got = [env.reset(seed=3)]
        for a in [37, 38, 37, 39, 37, 37, 38]:
            try:
                got.append(_step(env, a, vector))
            except ScorerError as e:
                assert "TimeoutError" in str(e) and "retry" in str(e)
                got.append(_step(env, a, vector))  # the same call again: the server is back
        _same(got, expected)


def test_failed_last_step_is_retryable_not_an_index_error():
    flaky = Flaky(fail_on={1})
    env = TextGenEnv(**{**KW, "scorer": flaky})
    env.reset(seed=0)
    env.step(37), env.step(37)
    before = env.render()
    with pytest.raises(ScorerError):
        env.step(37)  # the last token: the episode is scored and the scorer fails
    assert env.render() == before  # the token was not kept
    obs, reward, terminated, truncated, info = env.step(37)
    assert truncated and obs["num_generated"][0] == 3 and info["completion"] == "xxx"


def test_scorer_that_fails_forever_keeps_failing_cleanly():
    env = TextGenVectorEnv(num_envs=2, **{**KW, "scorer": Flaky(forever=True)}, reward_mode="dense")
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        with pytest.raises(ScorerError, match="TimeoutError: reward server timed out"):
            env.step(np.array([37, 37]))
        _same(env._episodes.observation(slice(None)), obs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda c: np.full(len(c), np.nan), "nan"),
        (lambda c: np.full(len(c), 1e39), "finite"),
        (lambda c: torch.ones(len(c), requires_grad=True), "tracks gradients"),
        (lambda c: np.ones(len(c)) * (1 + 1j), "complex"),
        (lambda c: ["0.5"] * len(c), "str"),
        (lambda c: [None] * len(c), "NoneType"),
        (lambda c: np.ones(len(c) + 1), "shape"),
    ],
    ids=["nan", "overflow", "grad-tensor", "complex", "strings", "none", "shape"],
)
def test_scorer_results_that_are_not_real_finite_numbers(value, message):
    env = TextGenEnv(**{**KW, "scorer": Flaky(value=value)}, reward_mode="dense")
    obs, _ = env.reset(seed=0)
    with pytest.raises(ScorerError, match=message):
        env.step(37)
    _same(env._episode.observation(0), obs)


def test_scorer_results_that_are_fine():
    for value in (
        lambda c: torch.full((len(c),), 0.5),
        lambda c: [np.float64(0.5)] * len(c),
        lambda c: [1] * len(c),
        lambda c: [torch.tensor(0.5)] * len(c),
    ):
        env = TextGenEnv(**{**KW, "scorer": Flaky(value=value)}, reward_mode="dense")
        env.reset(seed=0)
        assert env.step(37)[1] in (0.5, 1.0)


def test_scorer_timeout_is_real_and_retryable():
    slow = {"hang": True, "returned": False}
    release = threading.Event()

    def scorer(prompts, completions, references):
        if slow["hang"]:
            release.wait(30)  # blocked until the test releases it
            slow["returned"] = True
        return _score(prompts, completions, references)

    env = TextGenEnv(**{**KW, "scorer": scorer}, reward_mode="dense", scorer_timeout=0.2)
    ref = TextGenEnv(**KW, reward_mode="dense")
    _same(env.reset(seed=1), ref.reset(seed=1))
    with pytest.raises(ScorerTimeoutError, match="timeout of 0.2 s"):
        env.step(37)
    assert not slow["returned"]  # the step gave up while the scorer was still blocked
    slow["hang"] = False
    release.set()
    _same(env.step(37), ref.step(37))  # the retry: as if the timeout never happened
    for bad in (0, -1, "1", True, float("nan")):
        with pytest.raises(InvalidArgumentError, match="scorer_timeout"):
            TextGenEnv(**KW, scorer_timeout=bad)


def test_vector_reset_refusing_a_seed_or_prompt_changes_nothing():
    env, ref = TextGenVectorEnv(num_envs=3, **KW), TextGenVectorEnv(num_envs=3, **KW)
    _same(env.reset(seed=0), ref.reset(seed=0))
    for bad in ([5, 6, -1], [5, 6, "x"], [5, 6], "12", 1.5):
        with pytest.raises(InvalidArgumentError, match="seed"):
            env.reset(seed=bad)
    for prompt in (["ok", "ok", 3], ["ok", "ok", "\u4e2d"], ["ok"], 7, ("a", "b")):
        with pytest.raises(InvalidArgumentError, match="prompt"):
            env.reset(seed=[5, 6, 7], options={"prompt": prompt})
    with pytest.raises(InvalidArgumentError, match="split"):
        env.reset(seed=[5, 6, 7], options={"split": "dev"})
    # Autoresets draw exactly what an untouched env draws.
    _same(
        [env.step(np.full(3, 37)) for _ in range(12)], [ref.step(np.full(3, 37)) for _ in range(12)]
    )


def test_reset_arguments_are_checked():
    env = TextGenEnv(**KW)
    for options, message in [
        ([("split", "test")], "options must be a dict"),
        ("test", "options must be a dict"),
        ({"prompt": 5}, "must be a str or a textgym.Example, got int"),
        ({"prompt": b"abc"}, "got bytes"),
        ({"prompt": "\u4e2d\u6587"}, "cannot encode"),
        ({"splt": "test"}, "unknown reset option"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            env.reset(options=options)
    obs, info = env.reset(seed=np.int64(4), options={"prompt": Example("hello")})
    assert info["prompt"] == "hello"
    assert env.step(np.int32(37))[0]["num_generated"][0] == 1  # numpy integers are integers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_new_tokens": "3"}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": 3.0}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": 10**12}, "max_new_tokens must be between"),
        ({"max_prompt_tokens": 0}, "max_prompt_tokens must be between"),
        ({"vocab_size": 10}, "smaller than the tokenizer"),
        ({"vocab_size": 10**12}, "vocab_size must be between"),
        ({"stop_strings": "\n"}, r"list of strings.*stop_strings=\['\\n'\]"),
        ({"stop_strings": [""]}, "non-empty strings"),
        ({"reward_mode": "dens"}, "reward_mode must be one of"),
        ({"stop_on_eos": "yes"}, "stop_on_eos must be True or False"),
        ({"split": "dev"}, "split must be one of"),
        ({"prompts": "Once upon a time"}, r"not a file.*\['Once upon a time'\]"),
        ({"prompts": [1, 2]}, "expected a str, a dict or an Example"),
        ({"prompts": [{"prompt": 5}]}, "'prompt' field must be a str"),
        ({"prompts": ["ok", "\u4e2d"]}, "cannot encode"),
        ({"scorer": "vader"}, "scorer must be a callable"),
        ({"tokenizer": 5}, "tokenizer must be"),
        ({"task_kwargs": [1]}, "task_kwargs must be a dict"),
    ],
)
def test_constructor_arguments_are_checked_before_any_work(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        TextGenEnv(**{**KW, **kwargs})


def test_absurd_vector_sizes_are_refused_before_allocating():
    for num_envs, message in [("4", "an integer"), (10**9, "between"), (0, "between")]:
        with pytest.raises(InvalidArgumentError, match=f"num_envs must be {message}"):
            TextGenVectorEnv(num_envs=num_envs, **KW)
    with pytest.raises(InvalidArgumentError, match="GiB"):
        TextGenVectorEnv(num_envs=2**20, **{**KW, "max_new_tokens": 2**12})
    with pytest.raises(InvalidArgumentError, match="autoreset_mode"):
        TextGenVectorEnv(num_envs=2, autoreset_mode="Sometimes", **KW)
    assert TextGenVectorEnv(num_envs=np.int64(2), **KW).num_envs == 2


def test_every_user_error_is_a_textgym_error_and_a_builtin_one():
    assert issubclass(InvalidArgumentError, (ValueError, TypeError, TextgymError))
    assert issubclass(ScorerTimeoutError, (ScorerError, TimeoutError))
    assert issubclass(textgym.errors.ResetNeeded, gym.error.ResetNeeded)
    with pytest.raises(gym.error.ResetNeeded):
        TextGenEnv(**KW).step(37)


def test_unknown_render_modes_warn_like_gymnasium():
    with pytest.warns(UserWarning, match="renders text only"):
        env = TextGenEnv(**KW, render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render() is None and env.render_mode == "rgb_array"
    with pytest.warns(UserWarning, match="renders text only"):
        TextGenVectorEnv(num_envs=2, **KW, render_mode="rgb_array")


@pytest.mark.filterwarnings("ignore")
def test_stable_baselines3_defaults():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.env_util import make_vec_env

    for env_id in ("TextGen-Copy-v0", "TextDialogue-GuessNumber-v0"):
        envs = make_vec_env(env_id, n_envs=4, seed=0)  # SB3 passes render_mode="rgb_array"
        obs = envs.reset()
        assert obs["input_ids"].shape[0] == 4
        envs.step(np.full(4, 37))
        check_env(gym.make(env_id).unwrapped)
        envs.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PPO(
            "MultiInputPolicy",
            make_vec_env("TextGen-Copy-v0", n_envs=2),
            n_steps=8,
            batch_size=8,
            n_epochs=1,
            device="cpu",
        )
        model.learn(16)


@pytest.mark.parametrize("vector", [False, True])
def test_shaping_wrapper_whose_potential_fails_puts_the_env_back(vector):
    from textgym.wrappers import PotentialShaping, VectorPotentialShaping

    def make(potential):
        if vector:
            return VectorPotentialShaping(TextGenVectorEnv(num_envs=2, **KW), potential)
        return PotentialShaping(TextGenEnv(**KW), potential)

    actions = [14, 38, 14, 39, 14, 14, 38, 14, 14]
    expected = _play(make(Flaky()), actions, vector)
    for failing_call in (1, 2, 3, 5):
        env = make(Flaky(fail_on={failing_call}))
        got = [env.reset(seed=3)]
        for a in actions:
            try:
                got.append(_step(env, a, vector))
            except ScorerError:
                got.append(_step(env, a, vector))
        _same(got, expected)


# -- text no tokenizer can encode, and the integrations' inputs ----------------------------------

LONE = "a\ud800b"  # a lone surrogate: UTF-8 has no form for it


@pytest.mark.smollm2
def test_text_utf8_cannot_encode_is_refused_naming_the_argument():
    """A Hugging Face tokenizer raises a bare TypeError on a lone surrogate: every text entry
    point refuses it first, naming the argument, and changes nothing."""
    from textgym.integrations.text_env import TextEnvAdapter
    from textgym.turns import TextTurns, VectorTextTurns

    env, ref = gym.make("TextGen-v0"), gym.make("TextGen-v0")
    _same(env.reset(seed=1), ref.reset(seed=1))
    with pytest.raises(InvalidArgumentError, match=r"options\['prompt'\] holds '\\ud800'"):
        env.reset(seed=2, options={"prompt": LONE})
    with pytest.raises(InvalidArgumentError, match=r"completions\[1\] holds '\\ud800' at index 1"):
        env.unwrapped.encode_completions(["ok", LONE])
    with pytest.raises(InvalidArgumentError, match=r"prompt 0 of prompts holds"):
        env.unwrapped.encode_prompts([LONE])
    _same(env.step(37), ref.step(37))

    vec = TextGenVectorEnv(num_envs=2)
    with pytest.raises(InvalidArgumentError, match=r"options\['prompt'\]\[1\] holds '\\ud800'"):
        vec.reset(seed=0, options={"prompt": ["ok", LONE]})

    turns, ref_turns = TextTurns(gym.make("TextGen-v0")), TextTurns(gym.make("TextGen-v0"))
    _same(turns.reset(seed=1), ref_turns.reset(seed=1))
    with pytest.raises(InvalidArgumentError, match=r"turn 0 holds '\\ud800'"):
        turns.step(LONE)
    _same(turns.step("hello"), ref_turns.step("hello"))

    vturns = VectorTextTurns([gym.make("TextGen-v0") for _ in range(2)])
    vturns.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match=r"turn 1 holds '\\ud800'"):
        vturns.step(["ok", LONE])

    adapter = TextEnvAdapter("TextGen-v0")
    adapter.reset(seed=0)
    with pytest.raises(InvalidArgumentError, match=r"turn 0 holds '\\ud800'"):
        adapter.step(LONE)
    assert adapter.step("hello")[0] == ""  # the episode goes on as if nothing happened

    pytest.importorskip("datasets")
    from textgym.integrations import trl as textgym_trl

    (score,) = textgym_trl.reward_funcs("TextGen-v0")
    row = textgym_trl.dataset("TextGen-v0")[0]
    columns = {"prompt_index": [row["prompt_index"]], "split": [row["split"]]}
    with pytest.raises(InvalidArgumentError, match=r"completions\[0\] holds '\\ud800'"):
        score([row["prompt"]], [LONE], **columns)
    with pytest.raises(InvalidArgumentError, match=r"prompts\[0\] holds '\\ud800'"):
        score([row["prompt"] + LONE], ["ok"], **columns)


def test_char_tokenizer_unknown_text_next_to_the_unknown_token_literal_is_refused():
    from textgym.turns import TextTurns

    turns = TextTurns(TextGenEnv(**KW))
    turns.reset(seed=0)
    before = turns.unwrapped.current_completions()
    with pytest.raises(InvalidArgumentError, match="cannot encode"):
        turns.step("<unk>\u00e9")  # the literal <unk> does not cover the unknown character
    assert turns.unwrapped.current_completions() == before
    env = TextGenEnv(**KW)
    with pytest.raises(InvalidArgumentError, match="cannot encode"):
        env.reset(options={"prompt": "<unk>\u00e9"})
    turns.step("<unk>")  # the literal text alone is what it says: accepted


@pytest.fixture(scope="module")
def copy_rewards():
    pytest.importorskip("datasets")
    from textgym.integrations import trl as textgym_trl

    (score,) = textgym_trl.reward_funcs("TextGen-Copy-v0")
    rows = textgym_trl.dataset("TextGen-Copy-v0", size=3)
    return score, [rows[k] for k in range(3)]


def test_trl_reward_batches_must_line_up(copy_rewards):
    score, rows = copy_rewards
    prompts = [r["prompt"] for r in rows]
    index, split = [r["prompt_index"] for r in rows], [r["split"] for r in rows]
    good = score(prompts, ["abc", "d", ""], prompt_index=index, split=split)
    assert len(good) == 3
    assert score([], [], prompt_index=[], split=[]) == []
    for args, kwargs, message in [
        ((prompts[:2], ["a", "b", "c"]), {"prompt_index": index, "split": split}, "prompts must"),
        ((prompts, ["a", "b", "c"]), {"prompt_index": index[:2], "split": split}, "prompt_index"),
        ((prompts, ["a", "b", "c"]), {"prompt_index": index, "split": split[:1]}, "split must"),
        ((prompts, "abc"), {"prompt_index": index, "split": split}, "completions must be a list"),
        ((prompts, None), {"prompt_index": index, "split": split}, "completions must be a list"),
        ((prompts, ["a", None, "c"]), {"prompt_index": index, "split": split}, r"completions\[1\]"),
        (
            (prompts, ["a", "b", "c"]),
            {"prompt_index": [0, 1, 10**6], "split": split},
            r"prompt_index\[2\]",
        ),
        (
            (prompts, ["a", "b", "c"]),
            {"prompt_index": [0, -1, 2], "split": split},
            r"prompt_index\[1\]",
        ),
        (
            (prompts, ["a", "b", "c"]),
            {"prompt_index": [0.0, 1, 2], "split": split},
            r"prompt_index\[0\]",
        ),
        (
            (prompts, ["a", "b", "c"]),
            {"prompt_index": [True, 1, 2], "split": split},
            r"prompt_index\[0\]",
        ),
        (
            (prompts, ["a", "b", "c"]),
            {"prompt_index": index, "split": ["train", "dev", 3]},
            r"split\[1\]",
        ),
        (
            (prompts, ["a"] * 3),
            {"prompt_index": index, "split": split, "completion_ids": [[1]]},
            "completion_ids must have one entry per completion",
        ),
        (
            (prompts, ["a"] * 3),
            {"prompt_index": index, "split": split, "completion_ids": [[-1]] * 3},
            r"completion_ids\[0\] must be token ids",
        ),
        (([None] * 3, ["a"] * 3), {"prompt_index": index, "split": split}, r"prompts\[0\]"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            score(*args, **kwargs)
    assert score(prompts, ["abc", "d", ""], prompt_index=index, split=split) == good


def test_curriculum_with_a_level_that_cannot_be_played_changes_nothing():
    from textgym.wrappers import Curriculum, VectorCurriculum

    ok = Task("ok", PromptSet.from_list(["abc", "xyz"]), _score)
    also_ok = Task("also", PromptSet.from_list(["hello"]), _score)
    unplayable = Task("bad", PromptSet.from_list(["\u4e2d\u6587"]), _score)  # not in the alphabet
    for env in (TextGenEnv(**KW), TextGenVectorEnv(num_envs=2, **KW)):
        make = VectorCurriculum if isinstance(env, TextGenVectorEnv) else Curriculum
        core = env.core
        with pytest.raises(InvalidArgumentError, match="cannot encode"):
            make(env, levels=[ok, also_ok, unplayable])
        assert env.core is core and env.core.task_name == "faults"
        for bad in ("x", float("nan"), float("inf"), True, None):
            with pytest.raises(InvalidArgumentError, match="success_score"):
                make(env, levels=[ok, also_ok], success_score=bad)
        assert env.core is core
        assert make(env, levels=[ok, also_ok], success_score=np.float32(0.5)).level == 0


def test_gem_register_takes_a_list_and_registers_all_or_nothing():
    pytest.importorskip("gem")
    from gem.envs.registration import ENV_REGISTRY

    from textgym.integrations.gem import PREFIX, register

    with pytest.raises(InvalidArgumentError, match="env_ids must be a list"):
        register("TextGen-v0")
    gym.register("FaultsGem-v0", entry_point=lambda **kw: TextGenEnv(**KW))
    try:
        with pytest.raises(InvalidArgumentError, match="'bogus-v0' is not a registered"):
            register(["FaultsGem-v0", "bogus-v0"])
        assert PREFIX + "FaultsGem-v0" not in ENV_REGISTRY
        assert register(["FaultsGem-v0"]) == [PREFIX + "FaultsGem-v0"]
    finally:
        del gym.registry["FaultsGem-v0"]
        ENV_REGISTRY.pop(PREFIX + "FaultsGem-v0", None)


# -- failing calls: retries, and episodes that end as failed (textgym.retry) -----------------

FAST = textgym.RetryPolicy(retries=1, backoff=0.0, timeout=0.5)  # no waiting between attempts


class Faulty:
    """``fn`` (a scorer or a partner) whose calls raise on ~10% of calls and hang past the
    timeout on ~2% (seeded); it counts both. A hung call waits until :meth:`release` (or
    10 s), then answers."""

    def __init__(self, fn=_score, seed=0, raise_p=0.10, hang_p=0.02):
        self.fn, self.rng = fn, np.random.default_rng(seed)
        self.raise_p, self.hang_p = raise_p, hang_p
        self.calls = self.raised = self.hung = 0
        self.released = threading.Event()

    def __call__(self, *args):
        self.calls += 1
        u = self.rng.random()
        if u < self.hang_p:
            self.hung += 1
            self.released.wait(10)
        elif u < self.hang_p + self.raise_p:
            self.raised += 1
            raise ConnectionError("service unreachable")
        return self.fn(*args)

    def release(self):
        self.released.set()


def _slot_view(out, s):
    """Slot ``s``'s part of a vector step: observation, reward, flags and infos."""
    obs, reward, terminated, truncated, infos = out
    info = {k: v[s] for k, v in infos.items() if not k.startswith("_") and infos["_" + k][s]}
    return {k: v[s].tolist() for k, v in obs.items()}, reward[s], terminated[s], truncated[s], info


def _failed(infos):
    """The slots whose episode ended as failed in a vector step's infos."""
    n = len(infos["_failed"]) if "_failed" in infos else 4
    return infos.get("failed", np.zeros(n, bool)) & infos.get("_failed", np.zeros(n, bool))


def _fault_run(seed, mode="dense", steps=150):
    """Steps a vector env whose scorer is :class:`Faulty` beside one whose scorer never fails,
    that one put into the faulty env's state before each step. Returns the transcript and the
    env, its scorer and, per step, which slots failed."""
    faulty = Faulty(seed=seed)
    kw = {**KW, "reward_mode": mode, "retry": FAST, "on_failure": "end_episode"}
    envs = TextGenVectorEnv(num_envs=4, **{**kw, "scorer": faulty})
    clean = TextGenVectorEnv(num_envs=4, **kw)
    actions = np.random.default_rng(seed).integers(36, 42, size=(steps, 4))
    transcript = [envs.reset(seed=seed)]
    clean.reset(seed=seed)
    try:
        for a in actions:
            clean.restore_state(envs.save_state())
            out, expected = envs.step(a), clean.step(a)
            transcript.append(out)
            failed = _failed(out[4])
            for s in range(4):
                got, want = _slot_view(out, s), _slot_view(expected, s)
                if not failed[s]:  # a healthy slot: exactly what a scorer without faults gives
                    _same(got, want)
                    continue
                obs, reward, terminated, truncated, info = got
                assert obs == want[0]  # the token was kept: the episode ended, not rolled back
                assert (reward, terminated, truncated) == (0.0, False, True)
                assert np.isnan(info["score"]) and isinstance(info["completion"], str)
                assert info["failure"].startswith(("ConnectionError: ", "ScorerTimeoutError: "))
    finally:
        faulty.release()
    return transcript, envs, faulty


def test_faults_end_episodes_as_failed_counted_exact_and_deterministic():
    transcript, envs, faulty = _fault_run(seed=8, steps=300)
    counts = envs.fault_counts
    failures = [
        info["failure"][s] for *_, info in transcript[1:] for s in np.flatnonzero(_failed(info))
    ]
    # Every injected fault is a retry or the end of a call that failed for good.
    assert faulty.raised + faulty.hung == counts.retries + counts.failed_calls
    assert faulty.hung == counts.timeouts
    assert counts.failed_episodes == len(failures)
    assert 0.05 < faulty.raised / faulty.calls < 0.2 and faulty.hung > 0
    assert {f.split(":")[0] for f in failures} == {"ConnectionError", "ScorerTimeoutError"}
    again, _, _ = _fault_run(seed=8, steps=300)
    assert repr(again) == repr(transcript)  # the same seeds: the same faults, the same episodes


def test_a_batch_that_still_fails_is_scored_one_text_at_a_time():
    def scorer(prompts, completions, references):  # one completion breaks it, every time
        if any("b" in c for c in completions):
            raise ValueError("cannot parse 'b'")
        return _score(prompts, completions, references)

    policy = textgym.RetryPolicy(retries=2, backoff=0.0)
    envs = TextGenVectorEnv(
        num_envs=3, **{**KW, "scorer": scorer}, retry=policy, on_failure="end_episode"
    )
    envs.reset(seed=0)
    b = envs.unwrapped.tokenizer.convert_tokens_to_ids("b")
    for _ in range(3):
        _, reward, terminated, truncated, infos = envs.step(np.array([37, b, 38]))
    assert infos["failed"].tolist() == [False, True, False]
    assert infos["failure"][1] == "ValueError: cannot parse 'b'"
    assert truncated.tolist() == [True, True, True] and not terminated.any()
    healthy = infos["completion"][[0, 2]].tolist()
    assert reward[[0, 2]].tolist() == _score(None, healthy, None).tolist()
    assert reward[1] == 0.0 and np.isnan(infos["score"][1])
    # The batch: 3 attempts (2 retries, then failed); then each text alone, once: "b" fails.
    counts = envs.fault_counts
    assert (counts.retries, counts.failed_calls, counts.failed_episodes) == (2, 2, 1)


def _env_agrees(make, fn, actions, seed=0):
    """The vector env ``make(Faulty(fn))`` stepped beside ``make(fn)``, which is put into its
    state before each step: slots that did not fail match exactly. Returns (env, the faulty
    callable, the failures seen)."""
    faulty = Faulty(fn, seed=seed)
    envs, clean = make(faulty), make(fn)
    envs.reset(seed=seed)
    clean.reset(seed=seed)
    failures = []
    try:
        for a in actions:
            clean.restore_state(envs.save_state())
            out, expected = envs.step(a), clean.step(a)
            failed = _failed(out[4])
            for s in range(envs.num_envs):
                if failed[s]:
                    failures.append(out[4]["failure"][s])
                    assert (out[1][s], out[2][s], out[3][s]) == (0.0, False, True)
                else:
                    _same(_slot_view(out, s), _slot_view(expected, s))
    finally:
        faulty.release()
    return envs, faulty, failures


def test_a_failing_dialogue_partner_ends_only_its_dialogues():
    from textgym.envs import DialogueVectorEnv
    from textgym.partners import RulePartner

    def make(partner):  # no retry: faults end dialogues often
        retry = {"retries": 0, "timeout": 0.5}
        return DialogueVectorEnv(num_envs=4, partner=partner, retry=retry, on_failure="end_episode")

    digits = make("rule").unwrapped.tokenizer.convert_tokens_to_ids(list("12345678?"))
    actions = np.random.default_rng(0).choice(digits, size=(240, 4))
    envs, faulty, failures = _env_agrees(make, RulePartner(), actions, seed=3)
    counts = envs.fault_counts
    assert faulty.raised + faulty.hung == counts.retries + counts.failed_calls
    assert (faulty.hung, counts.failed_episodes) == (counts.timeouts, len(failures))
    assert faulty.raised > 5 and failures
    assert all(
        f.startswith(("ScorerError: ", "ConnectionError: ", "ScorerTimeoutError: "))
        for f in failures
    )


def test_retries_follow_the_policy_and_a_retried_step_is_exact(monkeypatch):
    waits = []
    monkeypatch.setattr("textgym.retry.time.sleep", waits.append)
    policy = textgym.RetryPolicy(retries=3, backoff=0.5, backoff_factor=2.0)
    for vector in (False, True):
        make = (lambda **k: TextGenVectorEnv(num_envs=2, **k)) if vector else TextGenEnv
        clean = make(**KW, reward_mode="dense")
        expected = _play(clean, [37, 38, 37, 39, 37, 37, 38], vector)
        flaky = Flaky(fail_on={2, 3, 5})  # two failures in a row, then one
        env = make(**{**KW, "scorer": flaky}, reward_mode="dense", retry=policy)
        _same(_play(env, [37, 38, 37, 39, 37, 37, 38], vector), expected)
        assert env.fault_counts == textgym.FaultCounts(retries=3)
        assert waits == [0.5, 1.0, 0.5]
        waits.clear()


def test_with_on_failure_raise_a_call_that_still_fails_raises_and_changes_nothing(monkeypatch):
    monkeypatch.setattr("textgym.retry.time.sleep", lambda s: None)
    env = TextGenVectorEnv(
        num_envs=2,
        **{**KW, "scorer": Flaky(forever=True)},
        reward_mode="dense",
        retry={"retries": 2},
    )
    obs, _ = env.reset(seed=0)
    with pytest.raises(ScorerError, match="reward server timed out"):
        env.step(np.array([37, 37]))
    _same(env._episodes.observation(slice(None)), obs)
    assert env.fault_counts == textgym.FaultCounts(retries=2, failed_calls=1)
    assert env.unwrapped.scorer.calls == 3


def test_a_single_env_episode_that_fails_ends_truncated_with_its_failure():
    env = TextGenEnv(**{**KW, "scorer": Flaky(forever=True)}, on_failure="end_episode")
    env.reset(seed=0)
    env.step(37), env.step(38)
    obs, reward, terminated, truncated, info = env.step(37)
    assert (reward, terminated, truncated) == (0.0, False, True)
    assert info["failed"] and info["failure"] == "TimeoutError: reward server timed out"
    assert np.isnan(info["score"]) and info["completion"] == "xyx"
    assert obs["num_generated"][0] == 3 and "failed: TimeoutError" in env.render()
    assert env.fault_counts == textgym.FaultCounts(failed_calls=1, failed_episodes=1)
    counts = env.fault_counts  # a copy: an iteration's counts are a difference of two
    counts.failed_episodes += 5
    assert env.fault_counts - textgym.FaultCounts(failed_calls=1) == textgym.FaultCounts(
        failed_episodes=1
    )
    with pytest.raises(textgym.errors.ResetNeeded):
        env.step(37)
    env.reset(seed=1)
    ok = TextGenEnv(**KW, on_failure="end_episode")
    ok.reset(seed=0)
    *_, info = [ok.step(37) for _ in range(3)][-1]
    assert info["failed"] is False and info["failure"] is None  # every final info has both
    plain = TextGenEnv(**KW)
    plain.reset(seed=0)
    *_, info = [plain.step(37) for _ in range(3)][-1]
    assert "failed" not in info and "failure" not in info  # the default: infos as before


@pytest.mark.filterwarnings("ignore")
def test_check_env_passes_with_failing_episodes_on():
    from gymnasium.utils.env_checker import check_env

    for scorer in (None, Flaky(forever=True)):
        kw = {**KW, "retry": {"retries": 1, "backoff": 0}, "on_failure": "end_episode"}
        check_env(TextGenEnv(**{**kw, "scorer": scorer}), skip_render_check=True)
    env = gym.make("TextGen-Copy-v0", on_failure="end_episode", retry=textgym.RetryPolicy())
    check_env(env.unwrapped)


def test_retry_policy_and_on_failure_are_checked():
    with pytest.raises(InvalidArgumentError, match="retries"):
        textgym.RetryPolicy(retries=-1)
    for field, bad in [
        ("retries", 1.5),
        ("retries", True),
        ("backoff", -1),
        ("backoff", float("nan")),
        ("backoff_factor", 0.5),
        ("timeout", 0),
        ("timeout", "5"),
    ]:
        with pytest.raises(InvalidArgumentError, match=field):
            textgym.RetryPolicy(**{field: bad})
    with pytest.raises(dataclasses.FrozenInstanceError):
        textgym.RetryPolicy().retries = 5
    assert textgym.RetryPolicy(backoff=1, backoff_factor=3).delay(2) == 9.0
    for kwargs, message in [
        ({"retry": 3}, "retry must be a textgym.RetryPolicy"),
        ({"retry": {"tries": 3}}, "unknown RetryPolicy field"),
        ({"retry": {"timeout": -1}}, "timeout"),
        ({"on_failure": "skip"}, "on_failure must be one of"),
        ({"on_failure": None}, "on_failure"),
        ({"scorer_timeout": 1.0, "retry": {"timeout": 2.0}}, "pass the timeout once"),
    ]:
        for make in (TextGenEnv, DialogueEnv, ToolUseEnv):
            if "scorer_timeout" in kwargs and make is not TextGenEnv:
                continue
            with pytest.raises(InvalidArgumentError, match=message):
                make(**(KW if make is TextGenEnv else {"tokenizer": "char"}), **kwargs)
    env = TextGenEnv(**KW, scorer_timeout=1.0, retry={"retries": 1})
    assert env.core.retry == textgym.RetryPolicy(retries=1, timeout=1.0)


class FlakyTool:
    """A calculator whose calls listed in ``fail_on`` (1-based) raise, or all once broken."""

    name, description = "calc", "exact arithmetic"

    def __init__(self, fail_on=(), forever=False):
        self.calc, self.calls, self.fail_on, self.forever = Calculator(), 0, set(fail_on), forever

    def __call__(self, argument):
        self.calls += 1
        if self.forever or self.calls in self.fail_on:
            raise ConnectionError("calculator service down")
        return self.calc(argument)


@pytest.mark.parametrize("on_failure", ["raise", "end_episode"])
def test_a_tool_that_raises_is_retried_then_shown_or_ends_the_episode(on_failure):
    from test_tool_use import CHAR_KWARGS, play

    def env(tool, **kw):
        made = ToolUseEnv(**CHAR_KWARGS, tools=[tool], on_failure=on_failure, **kw)
        made.reset(seed=0)
        return made

    clean = play(env(Calculator()), "<calc>6*7</calc>")
    retried = env(FlakyTool(fail_on={1}), retry={"retries": 1, "backoff": 0})
    _same(play(retried, "<calc>6*7</calc>"), clean)
    assert retried.fault_counts == textgym.FaultCounts(retries=1)

    broken = env(FlakyTool(forever=True), retry={"retries": 1, "backoff": 0})
    obs, reward, terminated, truncated, info = play(broken, "<calc>6*7</calc>")
    assert broken.fault_counts.failed_calls == 1
    if on_failure == "raise":  # as without a policy: the agent sees the error, and goes on
        assert not (terminated or truncated)
        assert "error: ConnectionError: calculator service down" in broken.render()
    else:
        assert (reward, terminated, truncated) == (0.0, False, True)
        assert info["failure"] == "ConnectionError: calculator service down"
        assert info["tool_calls"] == 1 and info["completion"] == "<calc>6*7</calc>"
        assert broken.fault_counts.failed_episodes == 1


def test_trl_reward_functions_give_none_for_a_failed_scoring_never_zero():
    pytest.importorskip("datasets")
    from textgym.integrations import trl as textgym_trl

    copy_scorer = gym.make("TextGen-Copy-v0").unwrapped.scorer

    def scorer(prompts, completions, references):  # breaks on one completion, every time
        if any("#" in c for c in completions):
            raise ValueError("unparseable")
        return copy_scorer(prompts, completions, references)

    rows = textgym_trl.dataset("TextGen-Copy-v0", size=3)
    kwargs = {"prompt_index": rows["prompt_index"], "split": rows["split"]}
    (plain,) = textgym_trl.reward_funcs("TextGen-Copy-v0")
    (score,) = textgym_trl.reward_funcs(
        "TextGen-Copy-v0",
        scorer=scorer,
        retry={"retries": 1, "backoff": 0},
        on_failure="end_episode",
    )
    good = plain(rows["prompt"], ["ab", "cd", "ef"], **kwargs)
    assert score(rows["prompt"], ["ab", "#", "ef"], **kwargs) == [good[0], None, good[2]]
    with pytest.raises(ScorerError, match="unparseable"):  # the default: a failure raises
        textgym_trl.reward_funcs("TextGen-Copy-v0", scorer=scorer)[0](
            rows["prompt"], ["ab", "#", "ef"], **kwargs
        )


def test_trl_grpo_leaves_failed_episodes_out_of_the_baseline_and_the_loss(tmp_path):
    pytest.importorskip("trl")
    from test_trl_integration import _trainer

    from textgym.integrations import trl as textgym_trl
    from textgym.models import tiny_lm
    from textgym.partners import RulePartner

    env_id = "TextDialogue-GuessNumber-v0"
    partner = Faulty(RulePartner(), seed=1, raise_p=0.25, hang_p=0.0)
    kwargs = {"partner": partner, "retry": {"retries": 0}, "on_failure": "end_episode"}
    rollout, rollouts = textgym_trl.rollout_func(env_id, **kwargs), []
    score, success = textgym_trl.reward_funcs(env_id, success=True, **kwargs)
    torch.manual_seed(0)
    trainer = _trainer(
        tmp_path,
        tiny_lm(vocab_size=99, n_layer=1, n_embd=32, n_head=2),
        env_id,
        [score, success],
        textgym_trl.dataset(env_id, size=16),
        reward_weights=[1.0, 0.0],
        rollout_func=lambda prompts, trainer: (
            rollouts.append(rollout(prompts, trainer)) or rollouts[-1]
        ),
    )
    trainer.train()  # the run survives its failing partner

    assert trainer.state.global_step == 2
    out = rollouts[-1]
    failed = [f is not None for f in out[textgym_trl.FAILURE_FIELD]]
    assert 0 < sum(failed) < len(failed)
    logged = trainer._logs["rewards"][score.__name__]
    advantages = trainer._logs["advantages"]
    for k, fail in enumerate(failed):
        if fail:  # no score, no advantage, no token in the loss
            assert out[textgym_trl.RETURN_FIELD][k] is None and np.isnan(logged[k])
            assert advantages[k] == 0.0 and set(out["env_mask"][k]) <= {0}
        else:
            assert logged[k] == pytest.approx(out[textgym_trl.RETURN_FIELD][k])
    for g in range(0, len(failed), 4):  # the group baseline is the mean of the scored ones
        healthy = [advantages[k] for k in range(g, g + 4) if not failed[k]]
        assert sum(healthy) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.filterwarnings("ignore")
def test_sb3_sees_a_failed_episode_as_truncated_and_trains_on():
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.sb3 import make_sb3_env

    scorer = Faulty(gym.make("TextGen-Copy-v0").unwrapped.scorer, seed=0, raise_p=0.3, hang_p=0)
    venv = make_sb3_env(
        "TextGen-Copy-v0", n_envs=4, seed=0, scorer=scorer, on_failure="end_episode"
    )
    seen, where, stored = [], [], []

    class Failed(BaseCallback):
        def _on_step(self):  # before SB3 bootstraps truncated episodes and stores the step
            for k, info in enumerate(self.locals["infos"]):
                if info.get("failed"):
                    seen.append(info)
                    where.append((self.model.rollout_buffer.pos, k))
            return True

        def _on_rollout_end(self):
            stored.extend(self.model.rollout_buffer.rewards[p, k] for p, k in where)
            where.clear()

    model = PPO("MultiInputPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, device="cpu")
    model.learn(64, callback=Failed())
    assert seen and all(i["TimeLimit.truncated"] and "terminal_observation" in i for i in seen)
    assert venv.venv.venv.fault_counts.failed_episodes == len(seen)
    # The placeholder 0.0 was replaced by gamma * V(last observation), as after a time limit.
    assert len(stored) == len(seen) and all(r != 0.0 for r in stored)

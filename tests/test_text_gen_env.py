"""TextGenEnv / TextGenVectorEnv behaviour on the character tokenizer (fast) and TextGen-v0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode

import textgym
from textgym import InvalidTokenError, PromptTooLongError, ScorerError, TextGenEnv
from textgym.envs.text_gen import TextGenVectorEnv
from textgym.errors import EmptyPromptSetError
from textgym.models import load_tokenizer
from textgym.tasks import PromptSet, Task

CHAR = load_tokenizer("char")


def ids(text: str) -> list[int]:
    return CHAR.encode(text)


def play(env, text: str):
    """Step the characters of ``text``; returns the list of step results."""
    return [env.step(t) for t in ids(text)]


# -- observations and episode end ------------------------------------------------------------


def test_observation_layout(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs)
    obs, info = env.reset(options={"prompt": "hi"})
    assert info == {"prompt": "hi", "prompt_index": -1, "split": "train"}
    assert env.observation_space.contains(obs)
    prompt = CHAR("hi", add_special_tokens=True)["input_ids"]  # <bos> h i
    # prompt left-padded in [0, 10), completion from 10 on
    assert obs["input_ids"][10 - len(prompt) : 10].tolist() == prompt
    assert obs["attention_mask"].tolist() == [0] * (10 - len(prompt)) + [1] * len(prompt) + [0] * 6
    assert obs["num_generated"].tolist() == [0]
    obs, *_ = play(env, "ab")[-1]
    assert obs["input_ids"][10:12].tolist() == ids("ab")
    assert obs["attention_mask"][10:12].tolist() == [1, 1]
    assert obs["num_generated"].tolist() == [2]


def test_truncated_at_max_new_tokens_with_sparse_score(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs)
    env.reset(seed=0)
    results = play(env, "aabbbb")
    rewards = [r[1] for r in results]
    assert rewards[:-1] == [0.0] * 5
    obs, reward, terminated, truncated, info = results[-1]
    assert (terminated, truncated) == (False, True)
    assert reward == pytest.approx(2 / 6)
    assert info["completion"] == "aabbbb" and info["num_tokens"] == 6
    assert info["score"] == pytest.approx(2 / 6)


def test_eos_terminates_and_is_not_in_the_completion(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs)
    env.reset(seed=0)
    play(env, "aa")
    obs, reward, terminated, truncated, info = env.step(CHAR.eos_token_id)
    assert (terminated, truncated) == (True, False)
    assert info["completion"] == "aa" and reward == 1.0
    assert obs["input_ids"][12] == CHAR.eos_token_id  # the observation keeps the EOS


def test_stop_string_terminates_and_cuts_the_completion(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs, stop_strings=["."])
    env.reset(seed=0)
    results = play(env, "ab.")
    _, reward, terminated, truncated, info = results[-1]
    assert terminated and not truncated
    assert info["completion"] == "ab"
    assert reward == pytest.approx(0.5)


def test_dense_rewards_sum_to_the_sparse_score(char_env_kwargs):
    dense = TextGenEnv(**char_env_kwargs, reward_mode="dense")
    sparse = TextGenEnv(**char_env_kwargs)
    for env in (dense, sparse):
        env.reset(seed=5)
    text = "abaxya"
    dense_rewards = [r[1] for r in play(dense, text)]
    sparse_rewards = [r[1] for r in play(sparse, text)]
    assert np.count_nonzero(dense_rewards) > 1
    assert sum(dense_rewards) == pytest.approx(sum(sparse_rewards), abs=1e-9)
    assert dense_rewards[0] == pytest.approx(1.0)  # "a": potential 0 -> 1


def test_reset_options_split_persists_and_prompts_are_seeded(char_env_kwargs, char_task):
    env = TextGenEnv(**char_env_kwargs)
    _, info = env.reset(seed=0, options={"split": "test"})
    assert info["split"] == "test" and info["prompt"].startswith("test")
    _, info = env.reset()
    assert info["split"] == "test"
    first = [env.reset(seed=s)[1]["prompt"] for s in range(20)]
    again = [env.reset(seed=s)[1]["prompt"] for s in range(20)]
    assert first == again
    assert len(set(first)) > 1


def test_render_modes(char_env_kwargs, capsys):
    env = TextGenEnv(**char_env_kwargs, render_mode="ansi")
    env.reset(options={"prompt": "hi"})
    play(env, "ab")
    text = env.render()
    assert "hi" in text and "ab" in text and "2/6 tokens" in text
    human = TextGenEnv(**char_env_kwargs, render_mode="human")
    human.reset(options={"prompt": "hi"})
    play(human, "aaaaaa")
    out = capsys.readouterr().out
    assert "hi" in out and "aaaaaa" in out and "score 1.0000" in out


def test_action_masks_hide_special_tokens_but_eos(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs)
    mask = env.action_masks()
    assert mask.shape == (len(CHAR),) and mask.dtype == bool
    assert mask[CHAR.eos_token_id]
    assert not mask[CHAR.pad_token_id] and not mask[CHAR.bos_token_id]
    assert mask[ids("a")[0]]
    envs = TextGenVectorEnv(num_envs=3, **char_env_kwargs)
    assert envs.action_masks().shape == (3, len(CHAR))


# -- errors ----------------------------------------------------------------------------------


def test_step_before_reset_and_after_end(char_env_kwargs):
    env = TextGenEnv(**char_env_kwargs)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(5)
    env.reset(seed=0)
    env.step(CHAR.eos_token_id)
    with pytest.raises(ResetNeeded, match="episode has ended"):
        env.step(5)


@pytest.mark.parametrize(
    "action, match",
    [
        (-1, "outside the vocabulary"),
        (10_000, "valid ids are 0.."),
        (2.5, "integer token ids"),
        ("a", "integer token ids"),
        (True, "integer token ids"),
        ([1, 2], "shape"),
    ],
)
def test_invalid_actions(char_env_kwargs, action, match):
    env = TextGenEnv(**char_env_kwargs)
    env.reset(seed=0)
    with pytest.raises(InvalidTokenError, match=match):
        env.step(action)
    env.step(np.int32(5))  # numpy integers are fine, and the episode is intact


def test_invalid_vector_actions_name_the_env(char_env_kwargs):
    envs = TextGenVectorEnv(num_envs=3, **char_env_kwargs)
    envs.reset(seed=0)
    with pytest.raises(InvalidTokenError, match="for env 1"):
        envs.step(np.array([4, 999, 4]))
    with pytest.raises(InvalidTokenError, match="shape"):
        envs.step(np.array([4, 4]))


def test_empty_prompts_are_rejected(char_task):
    with pytest.raises(EmptyPromptSetError, match="empty"):
        TextGenEnv(task=char_task, prompts=[], tokenizer="char")
    only_train = PromptSet(train=[textgym.Example("a")], test=[])
    with pytest.raises(EmptyPromptSetError, match="split 'test'"):
        TextGenEnv(task=char_task, prompts=only_train, tokenizer="char", split="test")


def test_long_prompts_truncate_with_warning_or_raise(char_env_kwargs):
    long = "x" * 30
    env = TextGenEnv(**char_env_kwargs)
    with pytest.warns(UserWarning, match="longer than max_prompt_tokens=10"):
        obs, _ = env.reset(options={"prompt": long})
    assert obs["attention_mask"][:10].all()
    strict = TextGenEnv(**char_env_kwargs, prompt_overflow="error")
    with pytest.raises(PromptTooLongError, match="raise max_prompt_tokens"):
        strict.reset(options={"prompt": long})


@pytest.mark.parametrize(
    "bad_scorer, match",
    [
        (lambda p, c, r: np.full(len(c), np.nan), "returned nan for prompt"),
        (lambda p, c, r: np.zeros(len(c) + 1), "shape"),
        (lambda p, c, r: 1 / 0, "raised ZeroDivisionError"),
    ],
)
def test_bad_scorers_raise_clear_errors(char_task, bad_scorer, match):
    task = Task("broken", char_task.prompts, bad_scorer)
    env = TextGenEnv(task=task, tokenizer="char", max_new_tokens=2, max_prompt_tokens=10)
    env.reset(seed=0)
    env.step(5)
    with pytest.raises(ScorerError, match=match) as err:
        env.step(5)
    assert "'broken'" in str(err.value)


# -- prompt sources --------------------------------------------------------------------------


def test_prompts_from_jsonl_and_dataset(tmp_path, char_env_kwargs):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two", "split": "test"}\n')
    env = TextGenEnv(**{**char_env_kwargs, "prompts": str(path)})
    assert env.reset(seed=0, options={"split": "test"})[1]["prompt"] == "two"
    datasets = pytest.importorskip("datasets")
    ds = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"prompt": ["alpha"]}),
        test=datasets.Dataset.from_dict({"prompt": ["beta"]}),
    )
    env = TextGenEnv(**{**char_env_kwargs, "prompts": ds})
    assert env.reset(seed=0)[1]["prompt"] == "alpha"


# -- vector env ------------------------------------------------------------------------------


def test_vector_env_autoresets_next_step(char_env_kwargs):
    envs = TextGenVectorEnv(num_envs=2, **char_env_kwargs)
    envs.reset(seed=0)
    eos, a = CHAR.eos_token_id, ids("a")[0]
    _, rewards, terminated, _, infos = envs.step(np.array([eos, a]))
    assert terminated.tolist() == [True, False]
    assert infos["_completion"].tolist() == [True, False] and infos["completion"][0] == ""
    obs, rewards, terminated, _, infos = envs.step(np.array([a, a]))
    # env 0 started a new episode (its action was ignored), env 1 went on
    assert obs["num_generated"][:, 0].tolist() == [0, 2]
    assert rewards.tolist() == [0.0, 0.0] and infos["_prompt"].tolist() == [True, False]


def test_vector_env_same_step_and_disabled_modes(char_env_kwargs):
    eos = CHAR.eos_token_id
    envs = TextGenVectorEnv(num_envs=2, autoreset_mode="SameStep", **char_env_kwargs)
    envs.reset(seed=0)
    obs, _, terminated, _, infos = envs.step(np.array([eos, 5]))
    assert terminated[0] and obs["num_generated"][0, 0] == 0  # already reset
    assert infos["final_obs"][0]["num_generated"][0] == 1 and infos["final_obs"][1] is None
    assert infos["final_info"]["completion"][0] == ""

    envs = TextGenVectorEnv(num_envs=2, autoreset_mode=AutoresetMode.DISABLED, **char_env_kwargs)
    envs.reset(seed=0)
    envs.step(np.array([eos, 5]))
    with pytest.raises(ResetNeeded, match="env 0"):
        envs.step(np.array([5, 5]))
    obs, _ = envs.reset(options={"reset_mask": np.array([True, False])})
    assert obs["num_generated"][:, 0].tolist() == [0, 1]
    envs.step(np.array([5, 5]))


def test_vector_env_scores_all_finished_episodes_in_one_call(char_task):
    calls = []

    def scorer(prompts, completions, references):
        calls.append(len(completions))
        return np.zeros(len(completions), dtype=np.float32)

    task = Task("counted", char_task.prompts, scorer)
    envs = TextGenVectorEnv(num_envs=8, task=task, tokenizer="char", max_new_tokens=3)
    envs.reset(seed=0)
    for _ in range(3):
        envs.step(np.full(8, 5))
    assert calls == [8]


def test_vector_env_options_prompt_and_split(char_env_kwargs):
    envs = TextGenVectorEnv(num_envs=2, **char_env_kwargs)
    _, infos = envs.reset(seed=0, options={"prompt": ["p one", "p two"]})
    assert infos["prompt"].tolist() == ["p one", "p two"]
    _, infos = envs.reset(seed=0, options={"split": "test"})
    assert all(p.startswith("test") for p in infos["prompt"])


@pytest.mark.smollm2
def test_textgen_v0_defaults():
    env = gym.make("TextGen-v0")
    assert env.action_space.n == 49_152
    assert env.observation_space["input_ids"].shape == (96,)
    obs, info = env.reset(seed=0)
    assert info["prompt"] and obs["attention_mask"].sum() > 1
    envs = gym.make_vec("TextGen-v0", num_envs=64)
    assert isinstance(envs, TextGenVectorEnv)
    envs = gym.make_vec("textgym:TextGen-v0", num_envs=2)
    assert isinstance(envs, TextGenVectorEnv)
    # A positive continuation scores higher than a negative one.
    single = env.unwrapped
    rewards = {}
    for text in (" wonderful, I loved it!", " awful, I hated it!"):
        single.reset(options={"prompt": "The food was"})
        for token in single.tokenizer.encode(text) + [single.tokenizer.eos_token_id]:
            _, reward, terminated, truncated, info = single.step(token)
        assert terminated and info["completion"] == text
        rewards[text] = reward
    assert rewards[" wonderful, I loved it!"] > 0.5 > -0.5 > rewards[" awful, I hated it!"]

"""The dialogue environments: games, partners, observation layout, rewards, vector env.

Conformance (check_env, determinism, pickle, native vector == SyncVectorEnv) is covered for the
registered ids by tests/test_conformance.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import textgym  # noqa: F401  (registers the ids)
from textgym.envs.dialogue import DialogueEnv, DialogueVectorEnv
from textgym.models import load_tokenizer, tiny_lm
from textgym.partners import GuessNumber, LMPartner, TwentyQuestions, make_game

GUESS = "TextDialogue-GuessNumber-v0"
CHAR = load_tokenizer("char")


def play(env, text: str):
    """Step the characters of ``text``; returns the last step's result."""
    for a in CHAR.encode(text):
        out = env.step(a)
    return out


def test_guess_number_rules():
    game = GuessNumber(1, 8)
    assert [game.answer(5, t) for t in ("4", "6", "5", "x", "9", "05")] == list("><=!!=")
    assert game.solved(5, "5?") and not game.solved(5, "4?")
    assert make_game("guess_number", high=16).high == 16
    with pytest.raises(ValueError):
        game.check_secret(9)
    with pytest.raises(ValueError):
        make_game("nope")


def test_twenty_questions_rules():
    game = TwentyQuestions()
    assert game.answer("cat", "Is it an animal?") == " Yes. Q:"
    assert game.answer("cat", "Is it big?") == " No. Q:"
    assert game.answer("cat", "Is it small?") == " Yes. Q:"  # negated keyword
    assert game.answer("plane", "Can it fly?") == " Yes. Q:"
    assert game.answer("cat", "Is it one of the dogs?") == " No. Q:"  # a (plural) guess
    assert game.answer("cat", "Is it a cat?") == " Yes, it is the cat!"
    assert game.answer("cat", "Hello") == " I can't tell. Q:"
    assert game.solved("cat", "cat?") and not game.solved("cat", "animal?")
    assert game.check_secret("Cat") == "cat"


def test_guess_number_observation_layout_and_reward():
    env = gym.make(GUESS).unwrapped
    core = env.core
    P, T = core.max_prompt_tokens, core.max_new_tokens
    assert (P, T, core.max_turn_tokens, core.max_reply_tokens) == (23, 24, 2, 1)
    obs, info = env.reset(seed=0, options={"secret": 5})
    assert info == {"prompt": "Guess my number (1-8):", "secret": 5, "split": "train"}
    assert env.observation_space.contains(obs)
    assert CHAR.decode(obs["input_ids"][:P], skip_special_tokens=True) == info["prompt"]
    assert obs["num_generated"][0] == 0 and not obs["agent_mask"].any()

    obs, reward, terminated, truncated, info = env.step(CHAR.encode("4")[0])
    assert obs["num_generated"][0] == 1 and (reward, terminated, info) == (0.0, False, {})
    # The end-of-turn token: the agent's "?" and the partner's ">" land in the same step.
    obs, reward, terminated, truncated, info = env.step(CHAR.encode("?")[0])
    assert obs["num_generated"][0] == 3
    assert CHAR.decode(obs["input_ids"][P : P + 3]) == "4?>"
    np.testing.assert_array_equal(obs["agent_mask"][P : P + 3], [1, 1, 0])
    assert obs["agent_mask"].sum() == 2 and obs["attention_mask"][P : P + 3].all()

    obs, reward, terminated, truncated, info = play(env, "6?5?")
    assert terminated and not truncated
    assert reward == pytest.approx(1.0 - 0.1 * 3)
    assert info["completion"] == "4?>6?<5?=" and info["solved"] and info["turns"] == 3
    assert env.observation_space.contains(obs)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(4)


def test_turn_budget_invalid_guess_eos_and_out_of_turns():
    env = DialogueEnv(max_turns=2)
    env.reset(seed=0, options={"secret": 3})
    # No end-of-turn token: the turn ends at the budget (2 tokens); "ab" is not a guess.
    obs, reward, terminated, truncated, _ = play(env, "ab")
    assert CHAR.decode(obs["input_ids"][env.core.max_prompt_tokens :][:3]) == "ab!"
    _, reward, terminated, truncated, info = play(env, "7?")
    assert truncated and not terminated and reward == 0.0 and info["turns"] == 2
    assert not info["solved"] and info["completion"] == "ab!7?<"

    env.reset(seed=0, options={"secret": 3})
    obs, reward, terminated, truncated, info = env.step(CHAR.eos_token_id)  # gives up
    assert terminated and reward == 0.0 and obs["num_generated"][0] == 1  # no reply after EOS
    assert info["turns"] == 0

    # A dialogue budget smaller than max_turns exchanges truncates when the next one can't fit.
    small = DialogueEnv(max_turns=8, max_new_tokens=7)
    small.reset(seed=0, options={"secret": 3})
    _, _, _, truncated, info = play(small, "1?2?")
    assert truncated and info["turns"] == 2 and info["num_tokens"] == 6
    with pytest.raises(ValueError, match="cannot hold one turn"):
        DialogueEnv(max_new_tokens=2)


def test_reset_options_are_validated_before_any_change():
    env = DialogueEnv(game_kwargs={"high": 16})
    obs, info = env.reset(seed=1)
    assert 1 <= info["secret"] <= 16 and env.core.max_turn_tokens == 3
    for bad in ({"secret": 17}, {"secret": "5"}, {"colour": 1}, {"split": "valid"}):
        with pytest.raises(ValueError):
            env.reset(options=bad)
    _, info = env.reset(options={"split": "test", "secret": 16})
    assert info["split"] == "test" and info["secret"] == 16


def test_vector_env_batches_partner_calls_and_takes_secrets():
    calls = []

    def partner(game, secrets, turns, histories):
        calls.append(list(turns))
        return [game.answer(s, t) for s, t in zip(secrets, turns)]

    envs = gym.make_vec(GUESS, num_envs=3, partner=partner)
    assert isinstance(envs.unwrapped, DialogueVectorEnv)
    obs, infos = envs.reset(seed=0, options={"secret": [2, 5, 8]})
    assert infos["secret"].tolist() == [2, 5, 8]
    digits = np.array(CHAR.encode("558"))
    envs.step(digits)
    assert calls == []  # no turn ended yet
    obs, rewards, terminated, truncated, infos = envs.step(np.array(CHAR.encode("???")))
    assert calls == [["5?", "5?", "8?"]]  # every slot that ended a turn, one call
    np.testing.assert_array_equal(terminated, [False, True, True])
    np.testing.assert_allclose(rewards, [0.0, 0.9, 0.9])
    assert infos["completion"][1] == "5?=" and infos["_completion"].tolist() == [False, True, True]
    P = envs.unwrapped.core.max_prompt_tokens
    assert CHAR.decode(obs["input_ids"][0, P : P + 3]) == "5?<"
    assert obs["agent_mask"].shape == (3, P + 24)
    with pytest.raises(ValueError):
        envs.reset(options={"secret": [1, 2]})


def _binary_search(envs, obs) -> np.ndarray:
    """The optimal GuessNumber policy read from the observations: bisect on the replies."""
    core = envs.unwrapped.core
    P = core.max_prompt_tokens
    actions = []
    for ids, n in zip(obs["input_ids"], obs["num_generated"][:, 0]):
        text = CHAR.decode(ids[P : P + n])
        if text and text[-1].isdigit():
            actions.append(CHAR.encode("?")[0])
            continue
        low, high = 1, 8
        for guess, reply in zip(text[0::3], text[2::3]):
            if reply == ">":
                low = int(guess) + 1
            elif reply == "<":
                high = int(guess) - 1
        actions.append(CHAR.encode(str((low + high) // 2))[0])
    return np.array(actions)


def test_binary_search_solves_every_secret_in_at_most_four_turns():
    envs = gym.make_vec(GUESS, num_envs=8, autoreset_mode="SameStep")
    obs, _ = envs.reset(seed=0, options={"secret": list(range(1, 9))})
    rewards = np.full(8, np.nan)
    for _ in range(4 * 3):
        obs, r, terminated, truncated, infos = envs.step(_binary_search(envs, obs))
        assert not truncated.any()
        rewards[terminated & np.isnan(rewards)] = r[terminated & np.isnan(rewards)]
    assert (rewards >= 0.6 - 1e-9).all(), rewards
    assert rewards.mean() == pytest.approx(1 - 0.1 * np.mean([3, 2, 3, 1, 3, 2, 3, 4]))


def test_random_play_ends_within_the_budget():
    envs = gym.make_vec("TextDialogue-TwentyQuestions-v0", num_envs=4)
    T = envs.unwrapped.core.max_new_tokens
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(20 * 12 + 1):
        obs, _, terminated, truncated, _ = envs.step(rng.integers(1000, 2000, size=4))
        assert (obs["num_generated"] <= T).all()
        assert (obs["agent_mask"] <= obs["attention_mask"]).all()
        ended += int((terminated | truncated).sum())
    assert ended >= 4  # 20 turns of at most 12 tokens: episodes end without EOS too


def test_lm_partner_answers_in_one_batch_and_is_deterministic():
    partner = LMPartner(tiny_lm(vocab_size=99, seed=0), CHAR, max_new_tokens=4, max_reply_tokens=3)
    env = DialogueEnv(partner=partner, max_turns=2)
    assert env.core.max_reply_tokens == 3
    results = []
    for _ in range(2):
        env.reset(seed=0, options={"secret": 4})
        results.append(play(env, "1?2?"))
    assert results[0][4]["completion"] == results[1][4]["completion"]
    assert results[0][3] and results[0][4]["num_tokens"] <= 2 * (2 + 3)
    with pytest.raises(ValueError, match="partner_kwargs"):
        DialogueEnv(partner_kwargs={"model": "x"})


def test_render_shows_the_dialogue():
    env = DialogueEnv(render_mode="ansi")
    env.reset(seed=0, options={"secret": 2})
    play(env, "2?")
    text = env.render()
    assert "Guess my number (1-8):2?=" in text and "solved in 1 turns" in text

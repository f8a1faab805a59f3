"""Control points: where a generation engine must hand control back to the env.

For each env, random token streams (drawn mostly from the tokens its rules look at) are fed the
way an engine feeds them: ask ``control_points()``, find the first point the stream reaches
(:func:`first_point`, the rule vLLM applies with ``stop_token_ids``, ``stop`` and
``max_tokens``), step the tokens. The env must neither end the episode nor append tokens of its
own before that point, and at a point that says "must" (a stop id or string, an act id, the
budget) it must end the episode or act.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
from textgym.envs import DialogueEnv, DialogueVectorEnv, TextGenEnv, TextGenVectorEnv, ToolUseEnv
from textgym.envs.control_points import ControlPoints
from textgym.errors import ResetNeeded
from textgym.wrappers import PotentialShaping

CHAR = CharTokenizer(DEFAULT_ALPHABET + "\n")


def first_point(points: ControlPoints, tokens: list[int], decode, full: tuple) -> tuple[int, bool]:
    """(index of the token at which control goes back, whether the env must act there): the
    first stop or act id, the first token after which the text written contains a stop or act
    string, or the last token of the budget; ``len(tokens)`` when the stream reaches none. A
    whole stop string (one of ``full``) must end the episode; the rest of one that began
    before the points were asked for may (if it comes right away)."""
    for i, token in enumerate(tokens):
        text = decode(tokens[: i + 1])
        if token in points.stop_token_ids or token in points.act_token_ids:
            return i, True
        if any(s in text for s in points.stop_strings):
            return i, any(s in text for s in full)
        if any(s in text for s in points.act_strings):
            return i, False  # tool use: a call may be complete, an answer line may end
        if i + 1 == points.max_tokens:
            return i, True
    return len(tokens), False


def drive(env, draw, rng, episodes: int, ask_midway: bool) -> int:
    """Play ``episodes`` with token streams from ``draw(rng, n)``, checking every point;
    returns how many points made the env act or end."""
    decode = env.unwrapped.tokenizer.decode
    full = env.unwrapped.core.stop_strings
    acted = 0
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        done = False
        while not done:
            points = env.control_points()
            assert points.max_tokens > 0
            tokens = draw(rng, points.max_tokens + 3)
            point, must = first_point(
                points, tokens, lambda t: decode(t, skip_special_tokens=True), full
            )
            if ask_midway and point > 1 and rng.random() < 0.5:
                point, must = int(rng.integers(0, point)), False  # an engine that stops early
            for i, token in enumerate(tokens[: point + 1]):
                before = int(obs["num_generated"][0])
                obs, _, terminated, truncated, _ = env.step(token)
                done = terminated or truncated
                env_wrote = int(obs["num_generated"][0]) > before + 1
                if i < point:
                    assert not (done or env_wrote), (
                        f"the env ended or acted at token {i} of {tokens}, before its point "
                        f"{point} ({points})"
                    )
                elif must:
                    assert done or env_wrote, f"nothing happened at the point {point} of {tokens}"
                acted += i == point and (done or env_wrote)
                if done:
                    break
    return acted


def stream(pieces: list[str], weights: list[float], tokenizer=CHAR):
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in pieces]
    p = np.asarray(weights, dtype=float) / sum(weights)

    def draw(rng, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            out += ids[rng.choice(len(ids), p=p)]
        return out[:n]

    return draw


@pytest.mark.parametrize("ask_midway", [False, True])
def test_text_gen_stops_at_eos_stop_strings_and_budget(ask_midway):
    env = TextGenEnv(
        task="copy",
        tokenizer="char",
        max_new_tokens=12,
        max_prompt_tokens=8,
        stop_strings=["ab", "."],
    )
    draw = stream(["a", "b", ".", "x", "<eos>"], [4, 4, 1, 4, 0.5])
    assert drive(env, draw, np.random.default_rng(0), 60, ask_midway) > 40


def test_text_gen_points_name_the_rules():
    env = TextGenEnv(task="copy", tokenizer="char", max_new_tokens=12, stop_strings=["ab"])
    env.reset(seed=0)
    points = env.control_points()
    assert points == ControlPoints(12, stop_token_ids=(2,), stop_strings=("ab",))
    env.step(CHAR.convert_tokens_to_ids("a"))  # the text now ends with the start of "ab"
    points = env.control_points()
    assert points.max_tokens == 11 and points.stop_strings == ("ab", "b")  # "b" may end it
    assert points.token_ids == (2,) and points.strings == ("ab", "b")
    no_eos = TextGenEnv(task="copy", tokenizer="char", stop_on_eos=False)
    no_eos.reset(seed=0)
    assert no_eos.control_points().stop_token_ids == ()


@pytest.mark.parametrize("ask_midway", [False, True])
def test_dialogue_hands_the_turn_over_at_end_of_turn_and_budget(ask_midway):
    env = DialogueEnv(max_turn_tokens=3)
    draw = stream(["1", "4", "7", "?", "x", "<eos>"], [2, 2, 2, 2, 1, 0.2])
    assert drive(env, draw, np.random.default_rng(1), 40, ask_midway) > 60
    env.reset(seed=0)
    points = env.control_points()
    assert points.act_token_ids == (CHAR.convert_tokens_to_ids("?"),) and points.max_tokens == 3


@pytest.mark.parametrize("ask_midway", [False, True])
def test_tool_use_acts_at_closing_tags_and_answer_lines(ask_midway):
    env = ToolUseEnv(
        tokenizer=CHAR, max_new_tokens=120, max_result_tokens=40, task_kwargs={"n_train": 8}
    )
    draw = stream(
        ["<calc>2*3</calc>", "<calc>", "</calc>", "Answer: 6\n", "\n", "x", "<eos>"],
        [3, 1, 1, 1, 1, 2, 0.2],
    )
    assert drive(env, draw, np.random.default_rng(2), 30, ask_midway) > 30
    env.reset(seed=0)
    for token in CHAR("<calc>1+", add_special_tokens=False)["input_ids"]:
        env.step(token)
    points = env.control_points()  # mid-call: the rest of the tags are points too
    assert "</calc>" in points.act_strings and "\n" in points.act_strings
    assert points.max_tokens == 120 - 8


def test_vector_env_gives_one_point_per_slot_and_none_for_finished_slots():
    envs = TextGenVectorEnv(num_envs=3, task="copy", tokenizer="char", max_new_tokens=5)
    with pytest.raises(ResetNeeded):
        envs.control_points()
    envs.reset(seed=0)
    eos, a = 2, CHAR.convert_tokens_to_ids("a")
    envs.step(np.array([eos, a, a]))
    points = envs.control_points()
    assert [p.max_tokens for p in points] == [0, 4, 4]
    assert points[1] == ControlPoints(4, stop_token_ids=(2,))
    dialogues = DialogueVectorEnv(num_envs=2)
    dialogues.reset(seed=0)
    assert all(p.act_token_ids for p in dialogues.control_points())


def test_single_env_needs_a_running_episode():
    env = TextGenEnv(task="copy", tokenizer="char", max_new_tokens=2)
    with pytest.raises(ResetNeeded):
        env.control_points()
    env.reset(seed=0)
    env.step(2)
    with pytest.raises(ResetNeeded):
        env.control_points()


def test_wrappers_and_registered_ids_pass_the_points_on():
    env = PotentialShaping(gym.make("TextGen-Copy-v0"))
    env.reset(seed=0)
    assert env.control_points() == env.unwrapped.control_points()
    assert env.control_points().max_tokens == 7
    envs = gym.make_vec("TextDialogue-GuessNumber-v0", num_envs=2)
    envs.reset(seed=0)
    assert len(envs.control_points()) == 2

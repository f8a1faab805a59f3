"""The tool-use environments: calls run by the env, results as env tokens, answers, limits.

Conformance (check_env, determinism, pickle, native vector == SyncVectorEnv, rejected calls
change nothing) is covered for the registered ids by tests/test_conformance.py and
tests/test_env_properties.py. Most tests here play a character-tokenizer variant (one token per
character, newline included), so a scripted agent's text maps to tokens one to one.
"""

from __future__ import annotations

import copy
import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv

import textgym
from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
from textgym.envs.tool_use import ToolUseEnv, ToolUseVectorEnv, answer_end
from textgym.errors import InvalidArgumentError, ScorerError
from textgym.procedural.tool_tasks import DataChecker, data_question, tool_arithmetic
from textgym.tools import Calculator

ARITHMETIC = "TextTools-Arithmetic-v0"
DATA = "TextTools-DataQuestion-v0"
CHAR = CharTokenizer(DEFAULT_ALPHABET + "\n")  # the built-in alphabet has no newline
# One token per character: results and budgets take more tokens than with SmolLM2's.
CHAR_KWARGS = dict(
    tokenizer=CHAR,
    max_new_tokens=600,
    max_result_tokens=100,
    task_kwargs={"n_train": 20, "n_test": 5},
)


def char_env(**kwargs) -> ToolUseEnv:
    return ToolUseEnv(**{**CHAR_KWARGS, **kwargs})


def play(env, text: str):
    """Step the tokens of ``text`` (the env's tokenizer) until they run out or the episode
    ends; returns the last step's result."""
    for token in env.unwrapped.tokenizer(text, add_special_tokens=False)["input_ids"]:
        out = env.step(token)
        if out[2] or out[3]:
            break
    return out


def operands(prompt: str) -> tuple[int, int]:
    a, b = re.search(r"What is (\d+) \* (\d+)\?", prompt).groups()
    return int(a), int(b)


def trajectory(env, obs) -> tuple[str, str]:
    """(the agent's tokens, the env's tokens after the prompt), decoded."""
    P = env.unwrapped.core.max_prompt_tokens
    ids = obs["input_ids"][P : P + int(obs["num_generated"][0])]
    mask = obs["agent_mask"][P : P + len(ids)].astype(bool)
    decode = env.unwrapped.tokenizer.decode
    return decode(ids[mask].tolist()), decode(ids[~mask].tolist())


def test_calculator_call_then_answer_is_correct():
    env = gym.make(ARITHMETIC)
    obs, info = env.reset(seed=0)
    a, b = operands(info["prompt"])
    assert info["prompt"].startswith("You may call tools: <calc>expression</calc>")
    P = env.unwrapped.core.max_prompt_tokens
    assert obs["agent_mask"].sum() == 0

    before = int(play(env, f"I will use the calculator. <calc>{a} * {b}")[0]["num_generated"][0])
    obs, reward, terminated, truncated, info = play(env, "</calc>")
    # The step that closes the call appends the agent's last token and the whole result.
    result = env.unwrapped.tokenizer(f"<result>{a * b}</result>\n", add_special_tokens=False)
    result = result["input_ids"]
    after = int(obs["num_generated"][0])
    assert after - before == len(env.unwrapped.tokenizer("</calc>")["input_ids"]) + len(result)
    np.testing.assert_array_equal(obs["input_ids"][P + after - len(result) : P + after], result)
    assert obs["agent_mask"][P + after - len(result) : P + after].sum() == 0  # the env's tokens
    assert (reward, terminated, truncated, info) == (0.0, False, False, {})

    obs, reward, terminated, truncated, info = play(env, f"\nAnswer: {a * b}\n")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["outcome"] == "correct" and info["score"] == 1.0
    assert (info["tool_calls"], info["tool_errors"]) == (1, 0)
    agent, env_text = trajectory(env, obs)
    assert agent == f"I will use the calculator. <calc>{a} * {b}</calc>\nAnswer: {a * b}\n"
    assert env_text == f"<result>{a * b}</result>\n"
    assert info["completion"] == (
        f"I will use the calculator. <calc>{a} * {b}</calc><result>{a * b}</result>\n"
        f"\nAnswer: {a * b}\n"
    )
    assert info["num_tokens"] == int(obs["num_generated"][0])


def test_python_call_answers_a_data_question():
    env = gym.make(DATA)
    obs, info = env.reset(seed=3)
    reference = env.unwrapped.prompts["train"][info["prompt_index"]].reference
    obs, *_ = play(env, f"<python>\nanswer = {reference!r}\nprint(answer)\n</python>")
    assert trajectory(env, obs)[1] == f"<result>{reference}</result>\n"
    obs, reward, terminated, truncated, info = play(env, f"Answer: {reference}\n")
    assert (reward, terminated, info["outcome"], info["tool_calls"]) == (1.0, True, "correct", 1)


def test_wrong_answer_and_no_answer():
    env = char_env()
    _, info = env.reset(seed=1)
    a, b = operands(info["prompt"])
    _, reward, terminated, _, info = play(env, f"Answer: {a * b + 1}\n")
    assert (reward, terminated, info["outcome"], info["tool_calls"]) == (0.0, True, "wrong", 0)
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(CHAR.eos_token_id)
    assert (reward, terminated, info["outcome"]) == (0.0, True, "format_error")


def test_hostile_python_calls_are_error_results_and_the_episode_goes_on():
    env = char_env(tool_timeout=0.5, max_tool_calls=8)
    _, info = env.reset(seed=0)
    a, b = operands(info["prompt"])
    calls = {
        "open('/etc/passwd').read()": "blocked: reading outside the working folder (/etc/passwd)",
        "import socket; socket.create_connection(('1.1.1.1', 80))": "blocked: network access",
        "import os; os.kill(os.getppid(), 9)": "blocked",
        "while True: pass": "timed out after 0.5 s",
        "1/0": "ZeroDivisionError: division by zero",
    }
    for code, error in calls.items():
        obs, reward, terminated, truncated, info = play(env, f"<python>{code}</python>")
        assert not (terminated or truncated) and info == {}
        shown = trajectory(env, obs)[1].split("<result>")[-1]
        assert shown.startswith(f"error: {error}") and shown.endswith("</result>\n"), shown
    _, reward, terminated, _, info = play(env, f"<calc>{a}*{b}</calc>Answer: {a * b}\n")
    assert (reward, terminated, info["outcome"]) == (1.0, True, "correct")
    assert (info["tool_calls"], info["tool_errors"]) == (len(calls) + 1, len(calls))


@pytest.mark.parametrize("env_id", ["char", DATA])
def test_special_token_text_in_a_result_is_plain_text(env_id):
    """A program that prints special-token text cannot end the episode or forge a turn: its
    output is appended as ordinary tokens, never as the special ids."""
    env = char_env() if env_id == "char" else gym.make(env_id)
    tokenizer = env.unwrapped.tokenizer
    text = "".join(tokenizer.all_special_tokens)  # e.g. <|im_end|><|im_start|>..., <eos><pad>...
    obs, _ = env.reset(seed=0)
    before = int(obs["num_generated"][0])
    code = f"print(bytes.fromhex('{text.encode().hex()}').decode())"  # no special text itself
    obs, reward, terminated, truncated, info = play(env, f"<python>{code}</python>")
    assert not (terminated or truncated) and info == {}
    P = env.unwrapped.core.max_prompt_tokens
    after = int(obs["num_generated"][0])
    appended = obs["input_ids"][P + before : P + after][
        obs["agent_mask"][P + before : P + after] == 0
    ]
    assert not set(appended.tolist()) & set(tokenizer.all_special_ids)
    assert trajectory(env, obs)[1] == f"<result>{text}</result>\n"


def test_max_tool_calls_is_enforced():
    env = char_env(max_tool_calls=2)
    env.reset(seed=0)
    obs, *_ = play(env, "<calc>1+1</calc><calc>2+2</calc><calc>3+3</calc>")
    assert trajectory(env, obs)[1] == (
        "<result>2</result>\n<result>4</result>\n"
        "<result>error: no tool calls left (2 per episode)</result>\n"
    )
    _, _, terminated, _, info = play(env, "Answer: 6\n")
    assert terminated and (info["tool_calls"], info["tool_errors"]) == (3, 1)


def test_calculator_errors_and_unknown_tags_are_not_crashes():
    env = char_env(tools=("calc",))
    _, info = env.reset(seed=0)
    assert "<python>" not in info["prompt"]  # the tool line names the env's tools only
    obs, *_ = play(env, "<calc>1/0</calc><calc>2^3</calc><python>1+1</python><b>x</b>")
    results = trajectory(env, obs)[1]
    assert results == (
        "<result>error: division by zero</result>\n"
        "<result>error: ^ is not a power here: use ** (2**10)</result>\n"
    )  # <python> is plain text without the python tool, and so is <b>


def test_an_answer_inside_a_call_is_code_and_a_result_is_not_an_answer():
    env = char_env()
    _, info = env.reset(seed=0)
    a, b = operands(info["prompt"])
    obs, _, terminated, *_ = play(env, f"<python>\nprint('Answer: {a * b}')\n")
    assert not terminated  # the answer line is inside the call being written
    obs, _, terminated, *_ = play(env, "</python>")
    assert not terminated and trajectory(env, obs)[1] == f"<result>Answer: {a * b}</result>\n"
    _, reward, terminated, _, info = play(env, f"So the answer: {a * b}\nmore text")
    assert (reward, terminated, info["outcome"]) == (1.0, True, "correct")
    assert info["completion"].endswith(f"So the answer: {a * b}\n")


def test_answer_end():
    names = ("calc", "python")
    assert answer_end("Answer: 12\n", names) == len("Answer: 12\n")
    assert answer_end("answer:\n 12\nrest", names) == len("answer:\n 12\n")
    assert answer_end("Answer: 12", names) is None  # the line is not finished
    assert answer_end("Answer:\n", names) is None  # nothing answered yet
    assert answer_end("<python>print('Answer: 1')\n", names) is None
    assert answer_end("Answer: 3\n<calc>1+", names) == len("Answer: 3\n")


def test_long_results_are_cut_and_the_budget_truncates():
    env = char_env(max_result_tokens=24, max_new_tokens=80)
    env.reset(seed=0)
    obs, *_ = play(env, "<python>print('x' * 100)</python>")
    results = trajectory(env, obs)[1]
    assert results == "<result>" + "x" * 3 + "...</result>\n" and len(results) == 24
    obs, reward, terminated, truncated, info = play(env, "<calc>2**200</calc>")
    assert truncated and not terminated and reward == 0.0
    assert int(obs["num_generated"][0]) == 80  # the result was cut to the budget left
    assert info["outcome"] == "format_error" and info["tool_calls"] == 2


def test_without_tools_calls_are_text():
    env = char_env(tools=())
    _, info = env.reset(seed=0)
    assert info["prompt"].startswith("What is")
    obs, *_ = play(env, "<calc>1+1</calc>")
    assert obs["agent_mask"].sum() == int(obs["num_generated"][0])


def _script(prompt: str, slot: int) -> str:
    a, b = operands(prompt)
    return [
        f"<calc>{a}*{b}</calc>Answer: {a * b}\n",
        "<python>sum(range(10))</python><calc>1/0</calc>Answer: 45\n",
        f"Answer: {a + b}\n",
        "<calc>1+</calc><calc>2</calc>x",
    ][slot % 4]


def same(a, b) -> None:
    """``a == b`` for nested step results (dicts, tuples, numpy arrays, object arrays)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, np.ndarray) and a.dtype == object:
        same(a.tolist(), b.tolist())
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_env_equals_single_envs_through_tool_calls(mode):
    n = 4
    native = ToolUseVectorEnv(num_envs=n, autoreset_mode=mode, **CHAR_KWARGS)
    reference = SyncVectorEnv([lambda: char_env() for _ in range(n)], autoreset_mode=mode)
    obs, infos = native.reset(seed=5)
    same((obs, infos), reference.reset(seed=5))
    scripts = [CHAR.encode(_script(p, s)) for s, p in enumerate(infos["prompt"])]
    first = {}  # slot -> (tool_calls, tool_errors, outcome) of its first episode
    for t in range(max(map(len, scripts)) + 1):
        actions = np.array([s[t] if t < len(s) else CHAR.eos_token_id for s in scripts])
        step = native.step(actions)
        same(step, reference.step(actions))
        final = step[4].get("final_info", step[4])
        for s in np.flatnonzero(step[2] | step[3]).tolist():
            first.setdefault(
                s, (final["tool_calls"][s], final["tool_errors"][s], final["outcome"][s])
            )
    assert first == {
        0: (1, 0, "correct"),
        1: (2, 1, "wrong"),
        2: (0, 0, "wrong"),
        3: (2, 1, "format_error"),
    }


def test_a_failed_scorer_puts_back_the_tool_calls_of_the_step():
    """Slot 0 completes a call while slot 1 ends its episode and the scorer fails: the step
    changes nothing (the call's result is taken back), and the retry runs the call again."""
    envs = ToolUseVectorEnv(num_envs=2, **CHAR_KWARGS)
    envs.reset(seed=0)
    for a, b in zip(CHAR.encode("<calc>2*3</calc"), CHAR.encode("Answer: 1       ")):
        envs.step(np.array([a, b]))
    untouched = copy.deepcopy(envs)

    def down(prompts, completions, references):
        raise RuntimeError("the reward server is down")

    scorer, envs.core.scorer = envs.core.scorer, down
    last = np.array(CHAR.encode(">\n"))
    with pytest.raises(ScorerError):
        envs.step(last)
    same(envs.save_state()[0], untouched.save_state()[0])  # every slot as before the step
    envs.core.scorer = scorer
    obs, rewards, terminated, truncated, infos = envs.step(last)
    want = untouched.step(last)
    np.testing.assert_array_equal(obs["input_ids"], want[0]["input_ids"])
    np.testing.assert_array_equal(obs["agent_mask"], want[0]["agent_mask"])
    assert list(terminated) == [False, True] and list(infos["tool_calls"][1:]) == [0]
    text = CHAR.decode(obs["input_ids"][0], skip_special_tokens=True)
    assert text.endswith("<calc>2*3</calc><result>6</result>\n")


def test_bad_arguments_are_rejected():
    for kwargs in (
        {"tools": ("calc", "shell")},
        {"tools": "calc"},
        {"tools": ("calc", "calc")},
        {"task": "arithmetic"},  # a TextGen task name, not a tool task
        {"max_tool_calls": -1},
        {"max_result_tokens": 5},
        {"tool_timeout": 0},
        {"task_kwargs": {"difficulty": "extreme"}},
        {"task_kwargs": {"digits": 7}},
    ):
        with pytest.raises(InvalidArgumentError):
            char_env(**kwargs)
    env = char_env()
    with pytest.raises(InvalidArgumentError, match="no task to set"):
        env.set_task("copy")


def test_prompt_budget_defaults_to_the_longest_prompt():
    env = char_env(max_prompt_tokens=None)
    longest = max(len(e.prompt) for split in ("train", "test") for e in env.prompts.splits[split])
    assert env.core.max_prompt_tokens == longest + 1  # the character tokenizer adds <bos>


def test_tasks_are_right_and_their_splits_disjoint():
    for task in (tool_arithmetic(n_train=50, n_test=10), data_question(n_train=200, n_test=20)):
        train = {e.prompt for e in task.prompts["train"]}
        assert not train & {e.prompt for e in task.prompts["test"]}
    for example in tool_arithmetic("hard", n_train=20, n_test=5).prompts["train"]:
        expression = re.search(r"What is (.*)\?", example.prompt).group(1)
        assert Calculator()(expression).text == example.reference
    for example in data_question("easy", n_train=200, n_test=5).prompts["train"]:
        rows = {
            city: [int(v) for v in values.split(", ")]
            for city, values in re.findall(r"^([A-Z][a-z]+): ([\d, ]+)$", example.prompt, re.M)
        }
        assert len(rows) == 3 and all(len(v) == 4 for v in rows.values())
        totals = {c: sum(v) for c, v in rows.items()}
        if "highest average" in example.prompt:
            assert example.reference == max(totals, key=totals.get)
        elif "from the highest to the lowest" in example.prompt:
            assert example.reference == ", ".join(sorted(totals, key=totals.get, reverse=True))
    checker = DataChecker()
    scores, outcomes = checker.score_with_outcomes(
        [""] * 5,
        ["Answer: oslo", "Answer: Lima, Oslo", "Answer: 1,234", "Answer: Oslo or Lima", "?"],
        ["Oslo", "Oslo, Lima", "1234", "Oslo", "Oslo"],
    )
    assert outcomes == ["correct", "wrong", "correct", "wrong", "format_error"]


def test_info_documents_the_tool_syntax():
    doc = textgym.describe(ARITHMETIC)
    assert doc.startswith(f"# {ARITHMETIC}")
    for text in (
        "## Action Space",
        "## Observation Space",
        "## Rewards",
        "## Starting State",
        "## Episode End",
        "## Info",
        "## Arguments",
        "<calc>48213 * 7719</calc><result>372156147</result>",
        "<result>error: reason</result>",
        "``max_tool_calls``",
    ):
        assert text in doc, text


def test_a_learner_runs_on_a_tool_env():
    """Two PPO iterations of a tiny LM on the character-tokenizer variant: rollouts and
    updates go through the env, results masked out of the loss as a dialogue partner's are."""
    torch = pytest.importorskip("torch")
    from agents import PPO, LMPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        envs = ToolUseVectorEnv(num_envs=4, **{**CHAR_KWARGS, "max_new_tokens": 24})
        policy = LMPolicy.tiny(envs, precision="fp32")
        agent = PPO(policy, envs, PPO.Config.for_policy(policy, progress=False, seed=0))
        agent.learn(iterations=2)
    finally:
        torch.set_num_threads(threads)
    assert agent.skipped_updates == 0


def test_demonstrations_are_the_episodes_that_play_them():
    """Stepping a demonstration's agent tokens through the env reproduces it: the same tokens
    after the prompt, the same agent_mask, and a correct answer."""
    for tools in (["calc"], ()):
        env = char_env(tools=tools)
        obs, info = env.reset(seed=3)
        example = env.unwrapped.core.bank("train").examples[info["prompt_index"]]
        demo = env.unwrapped.encode_demonstrations([example])
        n = int(demo["attention_mask"][0].sum())
        ids, agent = demo["input_ids"][0, :n], demo["agent_mask"][0, :n]
        for token in ids[agent == 1]:
            obs, reward, terminated, truncated, info = env.step(int(token))
        P = env.unwrapped.core.max_prompt_tokens
        assert terminated and reward == 1.0 and int(obs["num_generated"][0]) == n
        np.testing.assert_array_equal(obs["input_ids"][P : P + n], ids)
        np.testing.assert_array_equal(obs["agent_mask"][P : P + n], agent)
        a, b = operands(example.prompt)
        expected = f"<calc>{a} * {b}</calc><result>{a * b}</result>\n" if tools else ""
        assert info["completion"] == f"{expected}Answer: {a * b}\n"
        assert (agent == 0).any() == bool(tools)
    with pytest.raises(InvalidArgumentError, match="examples"):
        env.unwrapped.encode_demonstrations(["What is 2 * 3?"])

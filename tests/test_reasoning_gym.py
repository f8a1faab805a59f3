"""The reasoning-gym adapter (textgym.procedural.reasoning_gym): datasets build offline, the
entry's own answer scores 1, junk scores 0, and the proposed ids are valid."""

from __future__ import annotations

import copy
import inspect
import pickle
import socket
import sys

import numpy as np
import pytest

pytest.importorskip("reasoning_gym")

from gymnasium.envs.registration import parse_env_id  # noqa: E402

from textgym import TextGenEnv  # noqa: E402
from textgym.errors import InvalidArgumentError  # noqa: E402
from textgym.procedural import PROCEDURAL_TASKS  # noqa: E402
from textgym.procedural.reasoning_gym import (  # noqa: E402
    ANSWER_INSTRUCTION,
    EXECUTES_CODE,
    NOT_REPRODUCIBLE,
    NOT_STANDALONE,
    UNSOUND_SCORERS,
    EntryAnswer,
    reasoning_gym,
    reasoning_gym_ids,
)

SAMPLE = [
    "letter_counting",
    "basic_arithmetic",
    "spell_backward",
    "word_sorting",
    "knights_knaves",
    "maze",
    "number_sorting",
    "rotate_matrix",
    "family_relationships",
]
JUNK = ["", "   ", "zzqx garbage", "Answer: I don't know", "Answer:"]


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("reasoning-gym tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("dataset", SAMPLE)
def test_sample_datasets_build_and_score(dataset, offline):
    task = reasoning_gym(dataset, n_train=8, n_test=4, seed=0)
    train, test = task.prompts["train"], task.prompts["test"]
    assert train and test
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    examples = train + test
    prompts = [e.prompt for e in examples]
    refs = [e.reference for e in examples]
    assert all(p.endswith("\n" + ANSWER_INSTRUCTION) for p in prompts)
    assert all(isinstance(r, EntryAnswer) and r == r.entry["answer"] for r in refs)

    for form in (lambda a: a, lambda a: "Answer: " + a, lambda a: "Let me think.\nAnswer: " + a):
        scores, outcomes = task.scorer.score_with_outcomes(prompts, [form(r) for r in refs], refs)
        assert scores.dtype == np.float32 and (scores == 1.0).all(), dataset
        assert set(outcomes) == {"correct"}

    for junk in [*JUNK, prompts[0]]:  # the prompt echoed too
        scores, outcomes = task.scorer.score_with_outcomes(prompts, [junk] * len(refs), refs)
        assert (scores == 0.0).all(), (dataset, junk)
        assert set(outcomes) <= {"wrong", "format_error"}
    assert set(task.scorer.score_with_outcomes(prompts, [""] * len(refs), refs)[1]) == {
        "format_error"
    }


def test_generation_is_deterministic_under_seed():
    one = reasoning_gym("chain_sum", n_train=5, n_test=2, seed=3)
    again = reasoning_gym("chain_sum", n_train=5, n_test=2, seed=3)
    other = reasoning_gym("chain_sum", n_train=5, n_test=2, seed=4)
    assert [e.prompt for e in one.prompts["train"]] == [e.prompt for e in again.prompts["train"]]
    assert [e.prompt for e in one.prompts["train"]] != [e.prompt for e in other.prompts["train"]]


def test_difficulty_uses_the_curriculum():
    def terms(task):
        return np.mean([e.prompt.count("+") + e.prompt.count("-") for e in task.prompts["train"]])

    easy = reasoning_gym("chain_sum", "easy", n_train=40, n_test=5)
    hard = reasoning_gym("chain_sum", "hard", n_train=40, n_test=5)
    level_5 = reasoning_gym("chain_sum", 5, n_train=40, n_test=5)
    assert terms(easy) < terms(hard) <= terms(level_5)


def test_config_fields_and_bad_arguments():
    task = reasoning_gym("letter_counting", n_train=6, n_test=2, min_words=7, max_words=7)
    assert all(e.reference.entry["metadata"]["span_length"] == 7 for e in task.prompts["train"])
    with pytest.raises(InvalidArgumentError, match="no config field"):
        reasoning_gym("letter_counting", n_train=2, n_test=1, colour="red")
    with pytest.raises(InvalidArgumentError, match="unknown reasoning-gym dataset"):
        reasoning_gym("no_such_dataset")
    with pytest.raises(InvalidArgumentError, match="unknown reasoning-gym dataset"):
        reasoning_gym("composite")
    with pytest.raises(InvalidArgumentError, match="no curriculum"):
        reasoning_gym("acre", "easy", n_train=2, n_test=1)
    with pytest.raises(InvalidArgumentError, match="difficulty"):
        reasoning_gym("chain_sum", "extreme", n_train=2, n_test=1)
    with pytest.raises(InvalidArgumentError, match="n_train"):
        reasoning_gym("chain_sum", n_train=0)


def test_credit_floor_removes_the_format_bonus():
    # reasoning-gym's countdown gives 0.05 to a well-formed wrong expression (0.01 to any other
    # non-empty answer, which no longer reaches it: see test_answers_are_never_run).
    kept = reasoning_gym("countdown", n_train=3, n_test=1, credit_floor=0.0)
    floored = reasoning_gym("countdown", n_train=3, n_test=1)
    examples = kept.prompts["train"]
    args = ([e.prompt for e in examples], ["1 + 1"] * 3, [e.reference for e in examples])
    assert kept.scorer.score_with_outcomes(*args)[1] == ["partial"] * 3
    assert (kept.scorer(*args) == np.float32(0.05)).all()
    assert floored.scorer.score_with_outcomes(*args)[1] == ["wrong"] * 3


def test_entry_answer_keeps_its_entry_through_pickle_and_copy():
    entry = {"question": "q", "answer": "42", "metadata": {"grid": ((1, 2), (3, 4))}}
    ref = EntryAnswer(entry)
    assert ref == "42" and isinstance(ref, str)
    for clone in (pickle.loads(pickle.dumps(ref)), copy.deepcopy(ref)):
        assert clone == "42" and clone.entry == entry
    assert EntryAnswer({"question": "q", "answer": None}) == ""


def test_reasoning_gym_ids_list_the_offline_datasets(offline):
    from reasoning_gym.factory import DATASETS

    ids = reasoning_gym_ids()
    left_out = NOT_STANDALONE | set(UNSOUND_SCORERS) | set(NOT_REPRODUCIBLE) | set(EXECUTES_CODE)
    expected = set(DATASETS) - left_out
    assert {kwargs["task_kwargs"]["dataset"] for kwargs in ids.values()} == expected
    assert len(ids) >= 100
    env_params = inspect.signature(TextGenEnv).parameters
    for env_id, kwargs in ids.items():
        namespace, name, version = parse_env_id(env_id)
        assert namespace is None and version == 0 and name.startswith("RG-")
        assert ":" not in env_id and set(kwargs) <= set(env_params)
        assert kwargs["task"] == "reasoning_gym" and "reasoning_gym" in PROCEDURAL_TASKS


def test_every_listed_dataset_builds_offline(offline):
    for env_id, kwargs in reasoning_gym_ids().items():
        task = PROCEDURAL_TASKS["reasoning_gym"](**kwargs["task_kwargs"], n_train=2, n_test=1)
        assert task.prompts["train"][0].prompt, env_id  # generated now, on demand


def test_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    monkeypatch.setitem(sys.modules, "reasoning_gym.factory", None)
    assert reasoning_gym_ids() == {}
    with pytest.raises(ModuleNotFoundError, match="pip install reasoning-gym"):
        reasoning_gym("chain_sum")


def test_registering_the_ids_does_not_import_the_package():
    import subprocess

    code = (
        "import sys, textgym; "
        "assert any(i.startswith('RG-') for i in textgym.registered_ids()); "
        "assert 'reasoning_gym' not in sys.modules, 'import textgym imported reasoning_gym'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


EVALUATING = ["countdown", "puzzle24", "simple_integration", "polynomial_multiplication"]
EVALUATING += ["spiral_matrix", "string_insertion", "binary_matrix", "n_queens"]
HOSTILE_ANSWERS = [
    "__import__('pathlib').Path(MARK).touch()",
    "[__import__('pathlib').Path(MARK).touch()]",
    "exec(chr(95) + chr(95))",
    "getattr(__builtins__, 'open')(MARK, 'w')",
    "(lambda: open(MARK, 'w'))()",
]


@pytest.mark.parametrize("dataset", EVALUATING)
def test_answers_are_never_run(dataset, tmp_path):
    """These datasets' scorers eval the answer (eval() or sympy's parse_expr): a hostile answer
    is refused as a format error or read as a literal, and never runs; the oracle's answer
    still scores 1."""
    mark = tmp_path / "ran"
    task = reasoning_gym(dataset, n_train=2, n_test=1, seed=0)
    example = task.prompts["train"][0]
    for answer in HOSTILE_ANSWERS:
        completion = "Answer: " + answer.replace("MARK", repr(str(mark)))
        scores, outcomes = task.scorer.score_with_outcomes(
            [example.prompt], [completion], [example.reference]
        )
        assert not mark.exists(), (dataset, answer)
        assert outcomes[0] in ("format_error", "wrong") and scores[0] == 0.0, outcomes
    oracle = example.reference.entry["answer"]
    assert task.scorer([example.prompt], [f"Answer: {oracle}"], [example.reference])[0] == 1.0


@pytest.mark.parametrize(
    "answer, kind, safe",
    [
        ("6*(98 - 54) - 34 - 66", "arithmetic", True),
        ("x + 1", "arithmetic", False),  # no names in arithmetic
        ("2**3", "arithmetic", False),
        ("-5*X**9 - 2*X**6/3 + 4*X**3 + C", "symbolic", True),
        ("sin(x)**2/2 + exp(3*x) + C", "symbolic", True),
        ("x**(3/2)", "symbolic", True),
        ("9**9**9", "symbolic", False),  # a tower: millions of digits
        ("x**(99**99)", "symbolic", False),
        ("x**100", "symbolic", False),
        ("(x**2)**3**2", "symbolic", False),
        ("1000!", "symbolic", False),
        ("chr(95)", "symbolic", False),
        ("x.__class__", "symbolic", False),
        ("'x'", "symbolic", False),
        ("1" * 13, "arithmetic", False),
    ],
)
def test_only_plain_expressions_reach_sympy(answer, kind, safe):
    from textgym.procedural.answer_safety import safe_expression

    assert safe_expression(answer, kind) is safe

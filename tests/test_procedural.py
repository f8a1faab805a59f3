"""Procedural reasoning tasks (textgym.procedural): generation, splits and reward integrity.

Each checker must give 1 to right answers in odd but valid formats, 0 to the known hacks
(numbers not in the question, hedged or repeated answers, empty output, the prompt echoed), and
stay in its documented range; generation must be deterministic, every difficulty must build,
splits must be disjoint, and hand-solved questions must check.
"""

from __future__ import annotations

import inspect
import itertools
import re

import numpy as np
import pytest
from gymnasium.envs.registration import parse_env_id

from textgym import TextGenEnv
from textgym.char_tokenizer import DEFAULT_ALPHABET, CharTokenizer
from textgym.errors import InvalidArgumentError
from textgym.procedural import DIFFICULTIES, OUTCOMES, PROCEDURAL_IDS, PROCEDURAL_TASKS
from textgym.procedural.base import extract_answer, parse_expression, parse_integer
from textgym.procedural.countdown import CountdownChecker
from textgym.procedural.letter_counting import LetterCountChecker
from textgym.procedural.multistep_arithmetic import ArithmeticChecker
from textgym.procedural.ordering_puzzle import OrderingChecker
from textgym.procedural.spell_backward import SpellBackwardChecker, _words, edit_distance
from textgym.procedural.word_sorting import WordSortingChecker, inversions
from textgym.procedural.words import WORDS

OWN_TASKS = sorted(set(PROCEDURAL_TASKS) - {"reasoning_gym"})
SMALL = {"n_train": 60, "n_test": 20}


def outcome(checker, completion, reference):
    scores, outcomes = checker.score_with_outcomes(["q"], [completion], [reference])
    return float(scores[0]), outcomes[0]


def answer_of(reference) -> str:
    """The reference answer text (the first element of a tuple reference)."""
    return reference if isinstance(reference, str) else reference[0]


@pytest.fixture(scope="module", params=[(t, d) for t in OWN_TASKS for d in DIFFICULTIES])
def built(request):
    name, difficulty = request.param
    return name, difficulty, PROCEDURAL_TASKS[name](difficulty=difficulty, seed=0, **SMALL)


# -- every task and difficulty ------------------------------------------------------------------


def test_every_level_generates_disjoint_splits(built):
    name, difficulty, task = built
    train, test = task.prompts["train"], task.prompts["test"]
    assert train and test
    # Examples are drawn with replacement (made on demand), so a split may repeat a prompt;
    # no prompt is ever in both splits.
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert task.name == name and task.reward_range == (0.0, 1.0)


def test_prompts_state_the_answer_format(built):
    _, _, task = built
    for e in task.prompts["train"][:10]:
        assert e.prompt.endswith("\nAnswer:")
        assert re.search(r"(Write|List) (the|them) .*(alone|comma-separated)\.", e.prompt)


def test_reference_answers_score_one_and_outcomes_are_labelled(built):
    _, _, task = built
    examples = task.prompts["train"] + task.prompts["test"]
    prompts = [e.prompt for e in examples]
    refs = [e.reference for e in examples]
    scores, outcomes = task.scorer.score_with_outcomes(
        prompts, [" " + answer_of(r) for r in refs], refs
    )
    assert scores.dtype == np.float32 and scores.shape == (len(examples),)
    assert (scores == 1.0).all() and set(outcomes) == {"correct"}
    np.testing.assert_array_equal(
        task.scorer(prompts, ["Answer: " + answer_of(r) for r in refs], refs), scores
    )


def test_empty_echo_and_junk_score_zero(built):
    _, _, task = built
    examples = task.prompts["test"]
    prompts = [e.prompt for e in examples]
    refs = [e.reference for e in examples]
    echoes = (lambda p: p, lambda p: " " + p, lambda p: p.rsplit("\nAnswer:", 1)[0])
    for junk in (lambda p: "", lambda p: "   \n", lambda p: "?!", *echoes):
        scores, outcomes = task.scorer.score_with_outcomes(
            prompts, [junk(p) for p in prompts], refs
        )
        assert (scores == 0.0).all(), junk(prompts[0])
        assert set(outcomes) <= {"wrong", "format_error"}
    scores, outcomes = task.scorer.score_with_outcomes(prompts, [""] * len(prompts), refs)
    assert set(outcomes) == {"format_error"}


def test_generation_is_deterministic_under_seed(built):
    name, difficulty, task = built
    again = PROCEDURAL_TASKS[name](difficulty=difficulty, seed=0, **SMALL)
    other = PROCEDURAL_TASKS[name](difficulty=difficulty, seed=1, **SMALL)
    for split in ("train", "test"):
        assert task.prompts[split] == again.prompts[split]
    assert [e.prompt for e in task.prompts["train"]] != [e.prompt for e in other.prompts["train"]]


@pytest.mark.parametrize("name", OWN_TASKS)
def test_bad_arguments_raise(name):
    factory = PROCEDURAL_TASKS[name]
    with pytest.raises(InvalidArgumentError, match="difficulty"):
        factory(difficulty="extreme")
    with pytest.raises(InvalidArgumentError, match="n_train"):
        factory(n_train=0)


def test_outcome_api():
    checker = ArithmeticChecker()
    completions = [" 160", " 150", " 7", " x", ""]
    scores, outcomes = checker.score_with_outcomes(["q"] * 5, completions, ["160"] * 5)
    assert outcomes == ["correct", "partial", "wrong", "format_error", "format_error"]
    assert set(outcomes) <= set(OUTCOMES)
    np.testing.assert_array_equal(scores, np.array([1, 0.5, 0, 0, 0], dtype=np.float32))
    np.testing.assert_array_equal(checker(["q"] * 5, completions, ["160"] * 5), scores)
    with pytest.raises(InvalidArgumentError, match="references"):
        checker(["q"], [" 1", " 2"], ["1"])


# -- answer extraction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, answer",
    [
        (" 42", "42"),
        ("42.", "42"),
        ("Answer: 42", "42"),
        ("I think so.\nAnswer: 42\n", "42"),
        ("**Answer:** `42`", "42"),
        ('answer: "cab"', "cab"),
        ("Answer: 1\nAnswer: 2", "2"),
        ("", None),
        ("Answer:", None),
        ("  .  ", None),
    ],
)
def test_extract_answer(completion, answer):
    assert extract_answer(completion) == answer


def test_parse_integer_and_expression_are_strict():
    assert [parse_integer(t) for t in ("7", "-7", "+7", "1,234", "7.0", "seven", "= 7")] == [
        7,
        -7,
        7,
        1234,
        7,
        7,
        7,
    ]
    assert parse_integer("2 + 5 = 7") == 7
    for text in ("7 or 8", "7, 8", "7 8", "x = 7", "7.5", "seven or eight", "0x7", "1e3"):
        assert parse_integer(text) is None, text
    for text in ("__import__('os')", "2 ** 10", "-3 + 4", "3.5 * 2", "abs(3)", "(3", "[3]"):
        assert parse_expression(text) is None, text
    assert parse_expression("(3 + 4) * 2") is not None


# -- countdown ----------------------------------------------------------------------------------

COUNTDOWN_REF = ("2 * 6 - 3", "9", "2 3 4 6")  # make 9 from 2, 3, 4, 6


@pytest.mark.parametrize(
    "completion",
    [
        " 2 * 6 - 3",
        "6 + 3",
        "Answer: 3 + 6.",
        "  3+6  ",
        "6 + 3 = 9",
        "9 = 6 + 3",
        "(6 / 2) * 3",
        "6 × 3 ÷ 2",
        "`4 + 6 - 3 + 2`",
        "((6)) + (3)",
    ],
)
def test_countdown_accepts_valid_solutions(completion):
    assert outcome(CountdownChecker(), completion, COUNTDOWN_REF) == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("9", "wrong"),  # a number not in the question
        ("5 + 4", "wrong"),  # 5 is not given
        ("3 * 3", "wrong"),  # 3 given once, used twice
        ("6 / 4 * 3 * 2", "wrong"),  # 6 / 4 is not exact
        ("6 / (3 - 3)", "wrong"),  # division by zero (and 3 reused)
        ("6 * 4 * 3 * 2", "wrong"),  # valid but far off
        ("6 + 3 or 4 + 2 + 3", "format_error"),  # hedging
        ("6 + 3, 3 + 6", "format_error"),
        ("6 + 3 = 9 = 9", "format_error"),
        ("-2 + 6 + 4 + ...", "format_error"),
        ("6 ** 2", "format_error"),
        ("__import__('os').system('echo hacked')", "format_error"),
        ("", "format_error"),
    ],
)
def test_countdown_rejects_hacks(completion, expected):
    assert outcome(CountdownChecker(), completion, COUNTDOWN_REF) == (0.0, expected)


def test_countdown_partial_credit_for_a_near_valid_expression():
    # target 9, tol = max(1, 9 // 10) = 1: 6 + 4 = 10 misses by 1 -> 0.5 * (1 - 1/2)
    assert outcome(CountdownChecker(), "6 + 4", COUNTDOWN_REF) == (0.25, "partial")
    # target 200, tol 20: 6 * ... = 190 misses by 10 -> 0.5 * (1 - 10/21)
    score, label = outcome(CountdownChecker(), "(25 + 13) * 5", ("", "200", "25 13 5 7"))
    assert label == "partial" and score == pytest.approx(0.5 * (1 - 10 / 21))


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_countdown_questions_match_their_references(difficulty):
    task = PROCEDURAL_TASKS["countdown"](difficulty=difficulty, **SMALL)
    for e in task.prompts["train"]:
        solution, target, numbers = e.reference
        assert f"Make {target} from the numbers {', '.join(numbers.split())} " in e.prompt
        assert target not in numbers.split()


# -- multi-step arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion", [" 160", "160.", "Answer: 160", " = 160", "37 + 45 * 3 - 12 = 160", "**160**"]
)
def test_arithmetic_accepts_valid_formats(completion):
    assert outcome(ArithmeticChecker(), completion, "160") == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("160 or 161", "format_error"),
        ("150, 160, 170", "format_error"),
        ("160 161", "format_error"),
        ("about 160", "format_error"),
        ("x = 160", "format_error"),
        ("-160", "wrong"),
        ("159.5", "format_error"),
        ("612", "wrong"),
    ],
)
def test_arithmetic_rejects_hacks(completion, expected):
    assert outcome(ArithmeticChecker(), completion, "160") == (0.0, expected)


@pytest.mark.parametrize("completion", [" 161", " 159", " 150", " 260", " 1160", " 60"])
def test_arithmetic_partial_credit_for_a_carry_slip(completion):
    assert outcome(ArithmeticChecker(), completion, "160") == (0.5, "partial")


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_arithmetic_follows_precedence_and_parentheses(difficulty):
    task = PROCEDURAL_TASKS["multistep_arithmetic"](difficulty=difficulty, **SMALL)
    pairs = {"easy": 0, "medium": 1, "hard": 2}[difficulty]
    for e in task.prompts["train"] + task.prompts["test"]:
        expression = re.fullmatch(r"Compute (.*)\. Write.*", e.prompt, re.S).group(1)
        assert re.fullmatch(r"[\d ()+\-*]+", expression)
        assert expression.count("(") == pairs
        assert int(e.reference) == eval(expression, {"__builtins__": {}})  # noqa: S307


# -- letter counting ----------------------------------------------------------------------------


@pytest.mark.parametrize("completion", [" 3", "3.", "Answer: 3", " three", "Three", '"3"'])
def test_letter_counting_accepts_valid_formats(completion):
    # How many times does the letter "r" appear in "strawberry"?
    assert outcome(LetterCountChecker(), completion, str("strawberry".count("r"))) == (
        1.0,
        "correct",
    )


@pytest.mark.parametrize(
    "completion", ["3 or 4", "2, 3, 4", "3 4", "r appears 3 times", "", "3 r's"]
)
def test_letter_counting_rejects_hedges(completion):
    assert outcome(LetterCountChecker(), completion, "3") == (0.0, "format_error")


def test_letter_counting_partial_and_wrong():
    assert outcome(LetterCountChecker(), " 2", "3") == (0.25, "partial")
    assert outcome(LetterCountChecker(), " 4", "3") == (0.25, "partial")
    assert outcome(LetterCountChecker(), " 5", "3") == (0.0, "wrong")


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_letter_counts_are_right(difficulty):
    task = PROCEDURAL_TASKS["letter_counting"](difficulty=difficulty, **SMALL)
    for e in task.prompts["train"]:
        letter, text = re.search(r'letter "(.)" appear in "([a-z ]+)"', e.prompt).groups()
        assert int(e.reference) == text.count(letter)
        assert len(text.split()) == (3 if difficulty == "hard" else 1)


# -- spelling backward --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion",
    [
        " yrrebwarts",
        "YRREBWARTS.",
        "y-r-r-e-b-w-a-r-t-s",
        "y r r e b w a r t s",
        'Answer: "yrrebwarts"',
    ],
)
def test_spell_backward_accepts_valid_formats(completion):
    assert outcome(SpellBackwardChecker(), completion, "yrrebwarts") == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("strawberry", "wrong"),  # the word itself
        ("yrrebwarts or yrrebwarst", "wrong"),
        ("yrrebwarts, yrrebwarts", "wrong"),
        ("yrrebwarts!", "format_error"),
        ('Spell the word "strawberry" backward.', "format_error"),
        ("", "format_error"),
    ],
)
def test_spell_backward_rejects_hacks(completion, expected):
    assert outcome(SpellBackwardChecker(), completion, "yrrebwarts") == (0.0, expected)


def test_spell_backward_partial_credit_for_one_edit():
    for near in ("yrrebwart", "yrrebwartss", "yrrebxarts"):
        assert outcome(SpellBackwardChecker(), near, "yrrebwarts") == (0.5, "partial")
    assert edit_distance("kitten", "sitting") == 3


def test_spell_backward_words_are_never_their_own_near_reversal():
    for difficulty in DIFFICULTIES:
        for w in _words(difficulty):
            assert edit_distance(w, w[::-1]) >= 2


def test_word_list_is_clean():
    assert len(WORDS) == len(set(WORDS)) > 500
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 12 for w in WORDS)


# -- word sorting -------------------------------------------------------------------------------

SORT_REF = ("apple, fig, pear", "pear, apple, fig")


@pytest.mark.parametrize(
    "completion",
    [
        " apple, fig, pear",
        "Apple, Fig, Pear.",
        "apple fig pear",
        "apple, fig and pear",
        "APPLE,FIG,PEAR",
    ],
)
def test_word_sorting_accepts_valid_formats(completion):
    assert outcome(WordSortingChecker(), completion, SORT_REF) == (1.0, "correct")


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("pear, apple, fig", "wrong"),  # the question's order
        ("pear, fig, apple", "wrong"),  # reversed: worse than the question
        ("apple, fig, pear, apple, fig, pear", "wrong"),
        ("apple, fig, pear, plum", "wrong"),
        ("apple, fig", "wrong"),
        ("apple, fig, pear or fig, apple, pear", "wrong"),
        ("1. apple 2. fig 3. pear", "format_error"),
        ("Sort these words alphabetically: pear, apple, fig.", "format_error"),
        ("", "format_error"),
    ],
)
def test_word_sorting_rejects_hacks(completion, expected):
    assert outcome(WordSortingChecker(), completion, SORT_REF) == (0.0, expected)


def test_word_sorting_partial_credit_counts_fixed_pairs():
    # the question has 2 out-of-order pairs; "apple, pear, fig" has 1 -> 0.5 * (1 - 1/2)
    assert inversions(["pear", "apple", "fig"]) == 2
    assert outcome(WordSortingChecker(), "apple, pear, fig", SORT_REF) == (0.25, "partial")


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_word_sorting_questions_are_unsorted(difficulty):
    task = PROCEDURAL_TASKS["word_sorting"](difficulty=difficulty, **SMALL)
    size = {"easy": 3, "medium": 5, "hard": 7}[difficulty]
    for e in task.prompts["train"]:
        answer, asked = (r.split(", ") for r in e.reference)
        assert answer == sorted(asked) != asked and len(asked) == len(set(asked)) == size


# -- ordering puzzle ----------------------------------------------------------------------------

_CLUE_TESTS = {
    r"(\w+) is somewhere left of (\w+)": lambda p, n, x, y: p[x] < p[y],
    r"(\w+) is directly left of (\w+)": lambda p, n, x, y: p[y] == p[x] + 1,
    r"(\w+) is not next to (\w+)": lambda p, n, x, y: abs(p[x] - p[y]) > 1,
    r"(\w+) is between (\w+) and (\w+)": lambda p, n, x, y, z: (
        min(p[y], p[z]) < p[x] < max(p[y], p[z])
    ),
    r"(\w+) is first": lambda p, n, x: p[x] == 0,
    r"(\w+) is last": lambda p, n, x: p[x] == n - 1,
}


def read_puzzle(prompt: str) -> tuple[list[str], list]:
    """The names and one test per clue, read from the prompt's text (independently of the
    generator's clue table)."""
    people, clues = re.match(r"(.*) stand in a row\. (.*) List them", prompt).groups()
    names = re.findall(r"[A-Z]\w+", people)
    tests = []
    for sentence in clues.rstrip(".").split(". "):
        for pattern, test in _CLUE_TESTS.items():
            match = re.fullmatch(pattern, sentence)
            if match:
                tests.append((test, match.groups()))
                break
        else:
            raise AssertionError(f"unknown clue {sentence!r}")
    return names, tests


def solve_by_brute_force(names: list[str], tests: list) -> list[tuple[str, ...]]:
    """Every row of ``names`` that passes all ``tests``."""
    rows = []
    for row in itertools.permutations(names):
        position = {name: k for k, name in enumerate(row)}
        if all(test(position, len(names), *who) for test, who in tests):
            rows.append(row)
    return rows


def test_ordering_hand_solved_puzzle():
    prompt = (
        "Ann, Bob and Cal stand in a row. Cal is first. Ann is not next to Cal. "
        "List them from left to right, comma-separated.\nAnswer:"
    )
    assert solve_by_brute_force(*read_puzzle(prompt)) == [("Cal", "Bob", "Ann")]
    for completion in (" Cal, Bob, Ann", "cal bob ann", "Cal -> Bob -> Ann", "Cal, Bob and Ann."):
        assert outcome(OrderingChecker(), completion, "Cal, Bob, Ann") == (1.0, "correct")
    assert outcome(OrderingChecker(), "Bob, Cal, Ann", "Cal, Bob, Ann") == (0.25, "partial")
    for hack, expected in [
        ("Ann, Bob, Cal", "wrong"),
        ("Cal, Bob, Ann, Cal, Ann, Bob", "wrong"),
        ("Cal, Bob, Ann or Bob, Cal, Ann", "wrong"),
        ("Cal, Bob", "wrong"),
        ("1. Cal 2. Bob 3. Ann", "format_error"),
        ("", "format_error"),
    ]:
        assert outcome(OrderingChecker(), hack, "Cal, Bob, Ann") == (0.0, expected)


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_ordering_puzzles_have_one_solution_and_need_every_clue(difficulty):
    task = PROCEDURAL_TASKS["ordering_puzzle"](difficulty=difficulty, **SMALL)
    for e in task.prompts["train"][:20]:
        names, tests = read_puzzle(e.prompt)
        assert len(names) == {"easy": 3, "medium": 4, "hard": 5}[difficulty]
        assert solve_by_brute_force(names, tests) == [tuple(e.reference.split(", "))]
        for k in range(len(tests)):
            assert len(solve_by_brute_force(names, tests[:k] + tests[k + 1 :])) > 1
        if difficulty == "hard":
            assert " first." not in e.prompt and " last." not in e.prompt


# -- ids and environments -----------------------------------------------------------------------


def test_procedural_ids_are_valid_env_kwargs():
    assert len(PROCEDURAL_IDS) >= 18
    env_params = inspect.signature(TextGenEnv).parameters
    for env_id, kwargs in PROCEDURAL_IDS.items():
        namespace, name, version = parse_env_id(env_id)
        assert namespace is None and version == 0 and name.startswith("TextGen-")
        assert set(kwargs) <= set(env_params)
        inspect.signature(PROCEDURAL_TASKS[kwargs["task"]]).bind(**kwargs["task_kwargs"])
        assert kwargs["stop_strings"] == ("\n",)


def test_a_procedural_task_runs_in_textgym_env():
    task = PROCEDURAL_TASKS["letter_counting"](difficulty="easy", **SMALL)
    tok = CharTokenizer(DEFAULT_ALPHABET + "\n")  # the prompts end with "\nAnswer:"
    env = TextGenEnv(
        task=task, tokenizer=tok, max_prompt_tokens=96, max_new_tokens=4, stop_strings=["\n"]
    )
    by_prompt = {e.prompt: e.reference for e in task.prompts["train"]}
    _, info = env.reset(seed=0)
    answer = by_prompt[info["prompt"]]
    reward = None
    for token in tok.encode(" " + answer) + [tok.eos_token_id]:
        _, reward, terminated, truncated, info = env.step(token)
        if terminated or truncated:
            break
    assert reward == 1.0 and info["score"] == 1.0


@pytest.mark.smollm2
def test_procedural_ids_budgets_fit_smollm2():
    from textgym.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    for env_id, kwargs in PROCEDURAL_IDS.items():
        task = PROCEDURAL_TASKS[kwargs["task"]](**kwargs["task_kwargs"])
        examples = task.prompts["train"] + task.prompts["test"]
        longest_prompt = max(len(tok(e.prompt)["input_ids"]) for e in examples)
        longest_answer = max(
            len(tok(" " + answer_of(e.reference) + "\n", add_special_tokens=False)["input_ids"])
            for e in examples
        )
        assert longest_prompt <= kwargs["max_prompt_tokens"], env_id
        assert longest_answer <= kwargs["max_new_tokens"], env_id

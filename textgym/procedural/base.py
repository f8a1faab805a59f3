"""What every procedural task shares: outcome labels, answer extraction, the checker base class,
a safe arithmetic parser, difficulty names and disjoint train/test splits made on demand.

A checker is a batched scorer ``checker(prompts, completions, references) -> float32 array``
(a valid :data:`textgym.tasks.Scorer`) that also says *why* each completion got its score:
``checker.score_with_outcomes(...) -> (scores, outcomes)``, each outcome one of

* ``"correct"``: the answer is right (score 1.0);
* ``"partial"``: the answer is parsable and near (a documented score strictly between 0 and 1);
* ``"wrong"``: the answer is parsable but wrong, or breaks a rule of the task (score 0.0);
* ``"format_error"``: no answer can be read from the completion (score 0.0).

The answer is read the same way for every task (:func:`extract_answer`): the text after the
last ``Answer:`` marker, or the whole completion when there is none (:func:`answer_text`),
stripped of surrounding whitespace, quotes, backticks, Markdown bold and one trailing period. Each task then parses it
tolerantly (case, spacing, separators) but accepts one answer only: hedges such as ``"3 or 4"``
or lists of candidates are a format error or wrong, never correct.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from textgym.errors import InvalidArgumentError
from textgym.tasks import Example, LazyExamples, PromptSet

# -- outcomes ----------------------------------------------------------------------------------

CORRECT = "correct"
PARTIAL = "partial"
WRONG = "wrong"
FORMAT_ERROR = "format_error"
OUTCOMES = (CORRECT, PARTIAL, WRONG, FORMAT_ERROR)


class Verdict(NamedTuple):
    """The score of one completion and its outcome label (one of :data:`OUTCOMES`)."""

    score: float
    outcome: str


RIGHT = Verdict(1.0, CORRECT)
WRONG_ANSWER = Verdict(0.0, WRONG)
NO_ANSWER = Verdict(0.0, FORMAT_ERROR)


def partial(score: float) -> Verdict:
    """A partial-credit verdict; ``score`` must lie strictly between 0 and 1."""
    if not 0.0 < score < 1.0:
        raise ValueError(f"partial credit must be in (0, 1), got {score}")
    return Verdict(float(score), PARTIAL)


# -- difficulty --------------------------------------------------------------------------------

DIFFICULTIES = ("easy", "medium", "hard")


def check_difficulty(difficulty: Any) -> str:
    """``difficulty`` itself when it is one of :data:`DIFFICULTIES`, else a clear error."""
    if difficulty not in DIFFICULTIES:
        raise InvalidArgumentError(
            f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r:.40}"
        )
    return difficulty


# -- answer extraction -------------------------------------------------------------------------

ANSWER_MARKER = re.compile(r"\banswer\s*(?:\*\*)?\s*:(?:\*\*)?", re.IGNORECASE)
_WRAPPERS = ("**", "`", '"', "'", "\u201c", "\u201d")


def answer_text(completion: str) -> str:
    """The text after the last ``Answer:`` marker of ``completion`` (any case, ``**Answer:**``
    too), or the whole completion without one; surrounding whitespace removed."""
    markers = list(ANSWER_MARKER.finditer(completion))
    return (completion[markers[-1].end() :] if markers else completion).strip()


def extract_answer(completion: str) -> str | None:
    """The answer of ``completion`` (:func:`answer_text`) without surrounding quotes, backticks
    and ``**`` and one trailing period; None when nothing is left."""
    text = answer_text(completion)
    changed = True
    while changed and text:
        changed = False
        for w in _WRAPPERS:
            if len(text) >= 2 * len(w) and text.startswith(w) and text.endswith(w):
                text, changed = text[len(w) : -len(w)].strip(), True
        if text.endswith(".") and not text.endswith(".."):
            text, changed = text[:-1].rstrip(), True
    return text or None


_NUMBER_WORDS = {
    w: k
    for k, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
        + ("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")
        + ("eighteen", "nineteen", "twenty")
    )
}
_INTEGER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?")
_CLAIMED_RESULT = re.compile(r"^[\d\s+\-*/\u00d7\u00f7().]*=\s*(?P<result>.*)$")


def parse_integer(answer: str) -> int | None:
    """An integer answer: ``"42"``, ``"-42"``, ``"1,234"``, ``"42.0"``, a number word from
    ``"zero"`` to ``"twenty"``, or ``"6 * 7 = 42"`` / ``"= 42"`` (the part after ``=``, when
    what precedes it is arithmetic). None for anything else, ``"3 or 4"`` included."""
    text = answer.strip()
    claimed = _CLAIMED_RESULT.match(text)
    if claimed:
        text = claimed["result"].strip()
    if text.lower() in _NUMBER_WORDS:
        return _NUMBER_WORDS[text.lower()]
    if not _INTEGER.fullmatch(text):
        return None
    return int(text.split(".")[0].replace(",", ""))


def split_items(answer: str, fillers: Sequence[str] = ("and", "then")) -> list[str] | None:
    """The items of a list answer (``"apple, fig and pear"`` -> ``["apple", "fig", "pear"]``).

    Items are separated by commas, semicolons, arrows (``->``, ``>``) and/or whitespace and
    lower-cased; the connecting words ``fillers`` are dropped. None when an item holds anything
    but letters (numbering, brackets, a sentence's punctuation), so a list that is not in the
    asked format reads as a format error.
    """
    items = [
        t.lower() for t in re.split(r"(?:\s*(?:,|;|->|>)\s*)|\s+", answer.strip()) if t.strip()
    ]
    items = [t for t in items if t not in fillers]
    if not items or not all(t.isalpha() for t in items):
        return None
    return items


# -- arithmetic expressions --------------------------------------------------------------------

_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_MAX_EXPRESSION_CHARS = 200


def parse_expression(text: str) -> ast.expr | None:
    """The syntax tree of an arithmetic expression of non-negative integers, ``+ - * /`` and
    parentheses (``×`` and ``÷`` read as ``*`` and ``/``), or None for anything else: names,
    calls, powers, unary signs, decimals, text. Nothing is evaluated here."""
    text = text.replace("\u00d7", "*").replace("\u00f7", "/").strip()
    if not text or len(text) > _MAX_EXPRESSION_CHARS or not re.fullmatch(r"[\d\s+\-*/()]+", text):
        return None
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                return None
        elif isinstance(node, ast.Constant):
            if type(node.value) is not int:
                return None
        elif not isinstance(node, (ast.operator,)):
            return None
    return tree


def evaluate(tree: ast.expr, exact_division: bool = True) -> Fraction | None:
    """The exact value of a tree from :func:`parse_expression`; None on division by zero or,
    with ``exact_division``, on a division that leaves a remainder anywhere in the tree."""
    if isinstance(tree, ast.Constant):
        return Fraction(tree.value)
    assert isinstance(tree, ast.BinOp)
    left, right = evaluate(tree.left, exact_division), evaluate(tree.right, exact_division)
    if left is None or right is None:
        return None
    op = type(tree.op)
    if op is ast.Add:
        return left + right
    if op is ast.Sub:
        return left - right
    if op is ast.Mult:
        return left * right
    if right == 0 or (exact_division and (left / right).denominator != 1):
        return None
    return left / right


def numbers_in(tree: ast.expr) -> list[int]:
    """The integer literals of a tree from :func:`parse_expression`, in reading order."""
    if isinstance(tree, ast.Constant):
        return [tree.value]
    return numbers_in(tree.left) + numbers_in(tree.right)


# -- checkers ----------------------------------------------------------------------------------


class Checker:
    """Base class of the procedural scorers.

    Subclasses implement :meth:`judge` on the extracted answer; the base class extracts it,
    batches, and returns float32 scores (``__call__``) or scores with outcome labels
    (:meth:`score_with_outcomes`). ``reward_range`` is where every score lies.
    """

    reward_range: tuple[float, float] = (0.0, 1.0)

    def judge(self, answer: str, reference: Any) -> Verdict:
        """The verdict on one extracted (non-empty) answer."""
        raise NotImplementedError

    def check(self, completion: str, reference: Any) -> Verdict:
        """The verdict on one completion: a format error when no answer can be extracted."""
        answer = extract_answer(completion)
        return NO_ANSWER if answer is None else self.judge(answer, reference)

    def score_with_outcomes(
        self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[Any]
    ) -> tuple[np.ndarray, list[str]]:
        """``(scores, outcomes)``: float32 scores and one label of :data:`OUTCOMES` each."""
        if not len(prompts) == len(completions) == len(references):
            raise InvalidArgumentError(
                f"got {len(prompts)} prompts, {len(completions)} completions and "
                f"{len(references)} references; pass one of each per episode"
            )
        verdicts = [self.check(c, r) for c, r in zip(completions, references)]
        scores = np.array([v.score for v in verdicts], dtype=np.float32)
        return scores, [v.outcome for v in verdicts]

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], references: Sequence[Any]
    ) -> np.ndarray:
        return self.score_with_outcomes(prompts, completions, references)[0]


class IntegerChecker(Checker):
    """Scores an integer answer (read by :func:`parse_integer`) against ``reference``, the
    integer as text: 1 if equal, ``partial_score`` if :meth:`near` (a subclass's rule; never
    by default), else 0; a format error when the answer is not one integer."""

    partial_score = 0.5

    def near(self, answer: int, truth: int) -> bool:
        """Whether a wrong ``answer`` earns partial credit."""
        return False

    def judge(self, answer: str, reference: str) -> Verdict:
        value = parse_integer(answer)
        if value is None:
            return NO_ANSWER
        truth = int(reference)
        if value == truth:
            return RIGHT
        return partial(self.partial_score) if self.near(value, truth) else WRONG_ANSWER


# -- splits ------------------------------------------------------------------------------------


TEST_SHARE = 0.2
"""The share of all possible prompts reserved for test splits (:func:`in_test_split`)."""

MAX_SPLIT = 10**9
"""The most examples a generated split may hold (examples are made on demand, so any size up
to this is instant)."""

MAX_DRAWS = 1000
"""Draws :func:`disjoint_splits` tries for one example before it gives up."""


def in_test_split(name: str, prompt: str) -> bool:
    """Whether ``prompt`` of task ``name`` belongs to the test split: a hash of the prompt
    falls in the first :data:`TEST_SHARE` of its range. The same in every process and for
    every seed and split size, so no prompt is ever in both splits."""
    digest = hashlib.blake2b(f"{name}\0{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < TEST_SHARE * 2**64


def check_split_sizes(n_train: Any, n_test: Any, seed: Any = 0) -> None:
    """Refuse split sizes that are not ints in ``[1, MAX_SPLIT]`` and a negative seed."""
    for arg, value, low, high in (
        ("n_train", n_train, 1, MAX_SPLIT),
        ("n_test", n_test, 1, MAX_SPLIT),
        ("seed", seed, 0, None),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(f"{arg} must be an int >= {low}, got {value!r:.40}")
        if high is not None and value > high:
            raise InvalidArgumentError(f"{arg} must be at most {high:,}, got {value:,}")


def disjoint_splits(
    draw: Callable[[random.Random], Example | None],
    n_train: int,
    n_test: int,
    seed: int,
    name: str,
) -> PromptSet:
    """A prompt set of examples drawn by ``draw(rng)``, made lazily, no prompt in both splits.

    Example ``k`` of a split is made when first asked for (:class:`~textgym.tasks.LazyExamples`),
    from ``random.Random(f"{name}/{seed}/{k}/{j}")`` for ``j = 0, 1, ...``: the first draw
    that gives an example (``draw`` returns None for no valid one) whose prompt belongs to the
    split (:func:`in_test_split`) is it. So building a task costs nothing whatever its size,
    example ``k`` is the same in every process, and the splits are disjoint. Examples are
    drawn with replacement: a split may repeat a prompt, the more so the fewer prompts exist.
    """
    check_split_sizes(n_train, n_test, seed)
    train = LazyExamples(n_train, _Drawn(draw, seed, name, test=False))
    return PromptSet(train, LazyExamples(n_test, _Drawn(draw, seed, name, test=True)), name)


class _Drawn:
    """Example ``k`` of one split of :func:`disjoint_splits` (a class, not a closure, so that
    a task and the environments holding it pickle)."""

    def __init__(
        self, draw: Callable[[random.Random], Example | None], seed: int, name: str, test: bool
    ):
        self.draw, self.seed, self.name, self.test = draw, seed, name, test

    def __call__(self, k: int) -> Example:
        for j in range(MAX_DRAWS):
            example = self.draw(random.Random(f"{self.name}/{self.seed}/{k}/{j}"))
            if example is not None and in_test_split(self.name, example.prompt) == self.test:
                return example
        split = "test" if self.test else "train"
        raise RuntimeError(f"{self.name}: no {split} example {k} in {MAX_DRAWS} draws")


def pool_splits(
    examples: Sequence[Example], n_train: int, n_test: int, seed: int, name: str
) -> PromptSet:
    """A prompt set from a small, known pool of distinct examples (a word list): each split is
    the pool's examples that belong to it (:func:`in_test_split`), shuffled with ``seed``, the
    first ``n_train`` / ``n_test`` of them (fewer when the pool has fewer)."""
    check_split_sizes(n_train, n_test, seed)
    splits: dict[bool, list[Example]] = {False: [], True: []}
    for example in examples:
        splits[in_test_split(name, example.prompt)].append(example)
    rng = random.Random(seed)
    for split in splits.values():
        rng.shuffle(split)
    return PromptSet(splits[False][:n_train], splits[True][:n_test], name)

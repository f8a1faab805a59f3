"""Countdown: reach a target number with some of the given numbers and ``+ - * /``."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from textgym.procedural.base import (
    NO_ANSWER,
    RIGHT,
    WRONG_ANSWER,
    Checker,
    Verdict,
    check_difficulty,
    disjoint_splits,
    evaluate,
    numbers_in,
    parse_expression,
    partial,
)
from textgym.tasks import Example, Task

TEMPLATE = (
    "Make {target} from the numbers {numbers} with + - * / and parentheses, using each number "
    "at most once. Division must be exact. Write the expression alone.\nAnswer:"
)


@dataclass(frozen=True)
class Level:
    """How the questions of one difficulty are drawn."""

    count: int  # numbers in the question
    used: int  # numbers the generated solution combines
    small: int  # small numbers are drawn from 1..small (repeats allowed)
    large: tuple[int, ...]  # large numbers, each at most once
    n_large: int  # how many of the numbers are large
    operators: str  # operators of the generated solution (answers may use all four)
    target: tuple[int, int]  # the target's range


LEVELS = {
    "easy": Level(3, 2, 10, (), 0, "+-*", (2, 100)),
    "medium": Level(4, 3, 12, (15, 20, 25), 1, "+-*/", (10, 200)),
    "hard": Level(5, 4, 10, (25, 50, 75, 100), 2, "+-*/", (100, 999)),
}

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "": 3}  # "" marks a bare number


def _combine(rng: random.Random, level: Level, numbers: list[int]) -> tuple[int, str] | None:
    """A random solution over ``numbers``: (value, expression), or None if a draw fails.

    Intermediate values stay positive integers; no multiplying or dividing by 1."""
    pool = [(n, str(n), "") for n in numbers]
    while len(pool) > 1:
        i, j = rng.sample(range(len(pool)), 2)
        (a, a_text, a_op), (b, b_text, b_op) = pool[i], pool[j]
        op = rng.choice(level.operators)
        if op == "-" and a < b:
            (a, a_text, a_op), (b, b_text, b_op) = (b, b_text, b_op), (a, a_text, a_op)
        if op == "-" and a == b or op in "*/" and 1 in (a, b) or op == "/" and a % b:
            return None
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        # Parentheses only where precedence needs them: (a + b) * c, a - (b + c), a / (b * c).
        if _PRECEDENCE[a_op] < _PRECEDENCE[op]:
            a_text = f"({a_text})"
        if _PRECEDENCE[b_op] < _PRECEDENCE[op] + (op in "-/"):
            b_text = f"({b_text})"
        pool = [p for k, p in enumerate(pool) if k not in (i, j)]
        pool.append((value, f"{a_text} {op} {b_text}", op))
    return pool[0][0], pool[0][1]


def _draw(rng: random.Random, level: Level) -> Example | None:
    numbers = [rng.randint(1, level.small) for _ in range(level.count - level.n_large)]
    numbers += rng.sample(level.large, level.n_large)
    rng.shuffle(numbers)
    solved = _combine(rng, level, rng.sample(numbers, level.used))
    if solved is None:
        return None
    target, solution = solved
    low, high = level.target
    if not low <= target <= high or target in numbers:
        return None
    shown = ", ".join(map(str, numbers))
    return Example(
        TEMPLATE.format(target=target, numbers=shown),
        (solution, str(target), " ".join(map(str, numbers))),
    )


class CountdownChecker(Checker):
    """Scores a countdown expression against ``reference = (solution, target, numbers)``.

    ``numbers`` is space-separated. Correct (1.0): an expression of the given numbers, each used
    at most as often as given, with ``+ - * /`` and parentheses, exact divisions only, whose
    value is the target; ``"expr = N"`` and ``"N = expr"`` are read as ``expr`` (the claimed
    result ``N`` is not checked, the expression's value is).
    Partial: a valid expression ``d`` away from the target with ``d <= tol = max(1, target //
    10)`` earns ``0.5 * (1 - d / (tol + 1))`` (in (0, 0.5)). Wrong (0): a number not in the
    question or used too often, an inexact division or division by zero, or a value farther
    off. Format error (0): no expression (text, unary signs, powers, several ``=``).
    """

    def judge(self, answer: str, reference: tuple[str, str, str]) -> Verdict:
        _, target_text, numbers_text = reference
        target, numbers = int(target_text), [int(n) for n in numbers_text.split()]
        expression = _expression_side(answer)
        tree = None if expression is None else parse_expression(expression)
        if tree is None:
            return NO_ANSWER
        available = list(numbers)
        for n in numbers_in(tree):
            if n not in available:
                return WRONG_ANSWER
            available.remove(n)
        value = evaluate(tree, exact_division=True)
        if value is None:
            return WRONG_ANSWER
        miss = float(abs(value - target))
        tolerance = max(1, target // 10)
        if miss == 0:
            return RIGHT
        if miss <= tolerance:
            return partial(0.5 * (1 - miss / (tolerance + 1)))
        return WRONG_ANSWER


def _expression_side(answer: str) -> str | None:
    """``answer`` without a claimed result (``"3 * 8 = 24"`` -> ``"3 * 8"``), or None when
    it has several ``=`` or no side that is an expression."""
    sides = [s.strip() for s in answer.split("=")]
    if len(sides) == 1:
        return sides[0]
    if len(sides) > 2 or not all(sides):
        return None
    left, right = sides
    if right.isdigit() != left.isdigit():
        return left if right.isdigit() else right
    return None


def countdown(
    difficulty: str = "easy", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Reach a target with some of the given numbers: ``"Make 24 from the numbers 3, 8, 5
    ..."`` -> ``3 * 8``.

    ## Description

    Each question lists numbers and a target; the answer is an arithmetic expression that uses
    some of the numbers (each at most as often as listed) with ``+ - * /`` and parentheses and
    equals the target. Divisions must be exact. Every question is generated from a solution,
    so at least one exists (the reference keeps it); others count the same. Questions are drawn
    from ``seed``; train and test questions are disjoint.

    ## Difficulty

    * ``"easy"``: 3 numbers from 1-10; the generated solution combines 2 of them with
      ``+ - *``; targets 2-100.
    * ``"medium"``: 4 numbers, one of 15/20/25 and three from 1-12; solutions combine 3 with
      ``+ - * /``; targets 10-200.
    * ``"hard"``: 5 numbers, two of 25/50/75/100 and three from 1-10; solutions combine 4;
      targets 100-999.

    ## Rewards

    :class:`CountdownChecker`, in [0, 1]: 1 for a valid expression equal to the target;
    partial credit ``0.5 * (1 - d / (tol + 1))`` for a valid expression ``d <= tol = max(1,
    target // 10)`` away; 0 otherwise, including numbers that are not in the question, reused
    numbers and inexact divisions. The answer is the text after the last ``Answer:`` or the
    whole completion; ``"3 * 8 = 24"`` counts as ``3 * 8`` (only the expression's value is
    checked).

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: questions per split (5000 and 500).
    * ``seed``: the generator seed (0).

    The reference of each example is ``(solution, target, numbers)``, the numbers
    space-separated; a supervised warm start imitates the solution.
    """
    level = LEVELS[check_difficulty(difficulty)]
    return Task(
        name="countdown",
        prompts=disjoint_splits(
            functools.partial(_draw, level=level), n_train, n_test, seed, "countdown"
        ),
        scorer=CountdownChecker(),
        reward_range=CountdownChecker.reward_range,
        description=f"countdown ({difficulty}): reach the target with + - * / (1, partial, 0)",
    )

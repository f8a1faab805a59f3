"""Multi-step arithmetic: evaluate an expression with carries, precedence and parentheses."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from textgym.procedural.base import (
    IntegerChecker,
    check_difficulty,
    disjoint_splits,
    evaluate,
    parse_expression,
)
from textgym.tasks import Example, Task

TEMPLATE = "Compute {expression}. Write the number alone.\nAnswer:"


@dataclass(frozen=True)
class Level:
    """How the expressions of one difficulty are drawn."""

    operands: int  # numbers in the expression
    largest: int  # operands are drawn from 1..largest
    factor: int  # ... and from 1..factor when an operand of a "*"
    parentheses: int  # pairs of parentheses, each changing the value
    limit: int  # |result| <= limit


LEVELS = {
    "easy": Level(3, 50, 20, 0, 10_000),
    "medium": Level(4, 99, 50, 1, 100_000),
    "hard": Level(5, 999, 99, 2, 1_000_000),
}


_PRECEDENCE = {"+": 1, "-": 1, "*": 2}


def _expression(rng: random.Random, level: Level, leaves: int, parent: str = "") -> tuple[str, str]:
    """A random expression tree over ``leaves`` operands, written with the parentheses it needs
    and no others: ``(text, top operator)``, the operator ``""`` for a bare number."""
    if leaves == 1:
        return str(rng.randint(1, level.factor if parent == "*" else level.largest)), ""
    op = rng.choice("+-*")
    split = rng.randint(1, leaves - 1)
    left, left_op = _expression(rng, level, split, op)
    right, right_op = _expression(rng, level, leaves - split, op)
    if left_op and _PRECEDENCE[left_op] < _PRECEDENCE[op]:
        left = f"({left})"
    if right_op and _PRECEDENCE[right_op] < _PRECEDENCE[op] + (op == "-"):
        right = f"({right})"
    return f"{left} {op} {right}", op


def _without_pair(expression: str, k: int) -> str:
    """``expression`` without its ``k``-th opening parenthesis and the one that closes it."""
    start = [i for i, ch in enumerate(expression) if ch == "("][k]
    depth = 0
    for end in range(start, len(expression)):
        depth += (expression[end] == "(") - (expression[end] == ")")
        if depth == 0:
            break
    return expression[:start] + expression[start + 1 : end] + expression[end + 1 :]


def _left_to_right(expression: str) -> int:
    """The value of a flat expression read strictly left to right (no precedence)."""
    tokens = expression.split()
    value = int(tokens[0])
    for op, n in zip(tokens[1::2], tokens[2::2]):
        value = {"+": value + int(n), "-": value - int(n), "*": value * int(n)}[op]
    return value


def _value(expression: str) -> int:
    return int(evaluate(parse_expression(expression)))


def _draw(rng: random.Random, level: Level) -> Example | None:
    expression, _ = _expression(rng, level, level.operands)
    if expression.count("(") != level.parentheses:
        return None
    value = _value(expression)
    if abs(value) > level.limit:
        return None
    if level.parentheses == 0 and _left_to_right(expression) == value:
        return None  # precedence must matter
    for k in range(level.parentheses):  # and so must every pair of parentheses
        if _value(_without_pair(expression, k)) == value:
            return None
    return Example(TEMPLATE.format(expression=expression), str(value))


class ArithmeticChecker(IntegerChecker):
    """Scores an integer answer: 1 if right; partial credit 0.5 when it is off by exactly a
    power of ten (1, 10, 100, ...: a dropped or extra carry or borrow); 0 otherwise; a format
    error when the answer is not one integer (``"= 82"`` and ``"37 + 45 = 82"`` read as 82)."""

    partial_score = 0.5

    def near(self, answer: int, truth: int) -> bool:
        miss = abs(answer - truth)
        return str(miss).rstrip("0") == "1"


def multistep_arithmetic(
    difficulty: str = "easy", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Evaluate an arithmetic expression: ``"Compute 37 + 45 * 3 - 12."`` -> ``160``.

    ## Description

    Expressions of several operations with ``+ - *`` on multi-digit numbers, evaluated with the
    usual precedence (``*`` before ``+ -``, left to right otherwise); results may be negative.
    Multi-digit operands make carries and borrows common. Parentheses appear at the harder
    levels, and each pair changes the value (removing it gives another result). Expressions are
    drawn from ``seed``; train and test expressions are disjoint.

    ## Difficulty

    * ``"easy"``: 3 operands from 1-50 (1-20 when multiplied), no parentheses, and reading
      left to right would give another result (precedence matters); ``|result| <= 10,000``.
    * ``"medium"``: 4 operands from 1-99 (1-50 when multiplied), one pair of parentheses;
      ``|result| <= 100,000``.
    * ``"hard"``: 5 operands from 1-999 (1-99 when multiplied), two pairs of parentheses
      (nested or side by side); ``|result| <= 1,000,000``.

    ## Rewards

    :class:`ArithmeticChecker`, in [0, 1]: 1 for the exact result; 0.5 for a result off by
    exactly a power of ten (a carry slip); 0 otherwise, and for anything that is not one integer
    (``"3 or 4"``). ``"160"``, ``"Answer: 160."``, ``"= 160"``, ``"1,160"`` style thousands
    separators and ``"... = 160"`` are read as numbers.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: expressions per split (5000 and 500).
    * ``seed``: the generator seed (0).
    """
    level = LEVELS[check_difficulty(difficulty)]
    return Task(
        name="multistep_arithmetic",
        prompts=disjoint_splits(
            functools.partial(_draw, level=level), n_train, n_test, seed, "multistep_arithmetic"
        ),
        scorer=ArithmeticChecker(),
        reward_range=ArithmeticChecker.reward_range,
        description=f"multi-step arithmetic ({difficulty}): the exact result (1, 0.5, 0)",
    )

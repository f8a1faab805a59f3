"""Tasks where a tool helps: exact arithmetic on big numbers and questions about a small table.

The tool-use environments (:mod:`textgym.envs.tool_use`, ids ``TextTools-*``) play them: the
environment puts a line about its tools before each prompt, runs the calls the agent writes and
ends the episode at the agent's ``Answer:`` line, which the task's checker scores exactly. The
prompts here hold the problem and how to answer only, so the same task can be played with any
set of tools, or none.

* :func:`tool_arithmetic`: multiply numbers of 4 to 6 digits (``TextTools-Arithmetic-v0``).
* :func:`data_question`: a question about a table of daily figures per city: the highest
  average, a total, a rounded mean, a spread, a count, a ranking (``TextTools-DataQuestion-v0``).

:data:`TOOL_TASKS` maps their names to the factories.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from textgym.procedural.base import (
    NO_ANSWER,
    RIGHT,
    WRONG_ANSWER,
    IntegerChecker,
    Verdict,
    check_difficulty,
    disjoint_splits,
    split_items,
)
from textgym.tasks import Example, Task

NUMBER_ANSWER = 'End with a line "Answer: N" where N is the exact number.\n'
CITY_ANSWER = 'End with a line "Answer: CITY".\n'
RANKING_ANSWER = 'End with a line "Answer: CITY, CITY, ...".\n'

# -- arithmetic --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArithmeticLevel:
    """How the expressions of one difficulty are drawn."""

    digits: tuple[int, int]  # every operand has between these many digits (both included)
    products: int  # 1: a * b; 2: a * b + c * d or a * b - c * d


ARITHMETIC_LEVELS = {
    "easy": ArithmeticLevel((4, 4), 1),
    "medium": ArithmeticLevel((4, 6), 1),
    "hard": ArithmeticLevel((4, 6), 2),
}


def _operand(rng: random.Random, level: ArithmeticLevel) -> int:
    """A number with a digit count in ``level.digits`` that does not end in 0 (no easy zeros)."""
    digits = rng.randint(*level.digits)
    while True:
        n = rng.randint(10 ** (digits - 1), 10**digits - 1)
        if n % 10:
            return n


def _draw_arithmetic(rng: random.Random, level: ArithmeticLevel) -> Example:
    a, b = _operand(rng, level), _operand(rng, level)
    expression, value = f"{a} * {b}", a * b
    if level.products == 2:
        c, d = _operand(rng, level), _operand(rng, level)
        sign = rng.choice("+-")
        expression += f" {sign} {c} * {d}"
        value += c * d if sign == "+" else -c * d
    # A worked solution: one calculator call on the expression (the tool-use envs' demonstrations).
    meta = {"tool_calls": (("calc", expression),)}
    return Example(f"What is {expression}?\n{NUMBER_ANSWER}", str(value), meta)


def tool_arithmetic(
    difficulty: str = "medium", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Multiply big numbers exactly: ``"What is 48213 * 7719?"`` -> ``372156147``.

    ## Description

    Products of numbers with 4 to 6 digits, beyond what a small LM multiplies reliably in its
    head; one calculator call (``<calc>48213 * 7719</calc>``) gets them right. Operands never end
    in 0. Expressions are drawn from ``seed``; train and test expressions are disjoint. Each
    example's ``meta["tool_calls"]`` holds that call, ``(("calc", "48213 * 7719"),)``: the
    worked solution the tool-use environments demonstrate (``encode_demonstrations``).

    ## Difficulty

    * ``"easy"``: two numbers of 4 digits.
    * ``"medium"``: two numbers of 4 to 6 digits each.
    * ``"hard"``: ``a * b + c * d`` or ``a * b - c * d``, numbers of 4 to 6 digits (the result
      may be negative).

    ## Rewards

    :class:`~textgym.procedural.base.IntegerChecker`, in [0, 1]: 1 for the exact result, 0
    otherwise, and a format error for anything that is not one integer. ``"372156147"``,
    ``"372,156,147"`` and ``"48213 * 7719 = 372156147"`` are read as the number.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: expressions per split (5000 and 500).
    * ``seed``: the generator seed (0).
    """
    level = ARITHMETIC_LEVELS[check_difficulty(difficulty)]
    return Task(
        name="tool_arithmetic",
        prompts=disjoint_splits(
            functools.partial(_draw_arithmetic, level=level),
            n_train,
            n_test,
            seed,
            "tool_arithmetic",
        ),
        scorer=IntegerChecker(),
        reward_range=IntegerChecker.reward_range,
        description=f"multiply numbers of 4-6 digits ({difficulty}): the exact result (1, 0)",
    )


# -- questions about a table -------------------------------------------------------------------

CITIES = (
    "Oslo",
    "Lima",
    "Cairo",
    "Perth",
    "Quito",
    "Delhi",
    "Tokyo",
    "Paris",
    "Rome",
    "Dakar",
    "Hanoi",
    "Seoul",
    "Madrid",
    "Denver",
    "Boston",
    "Nairobi",
)


@dataclass(frozen=True)
class Measure:
    """What a table counts: its title, the noun the questions use, the range of its values."""

    title: str
    noun: str
    low: int
    high: int


MEASURES = (
    Measure("Daily rainfall in mm", "rainfall", 0, 60),
    Measure("Daily museum visitors", "number of visitors", 100, 999),
    Measure("Daily ice cream sales", "ice cream sales", 10, 300),
)


@dataclass(frozen=True)
class TableLevel:
    """The size of the tables of one difficulty."""

    cities: int
    days: int


TABLE_LEVELS = {"easy": TableLevel(3, 4), "medium": TableLevel(4, 6), "hard": TableLevel(6, 8)}

QUESTION_KINDS = (
    "highest_average",
    "lowest_total",
    "total",
    "average",
    "spread",
    "count_above",
    "ranking",
)


def _question(
    rng: random.Random, rows: dict[str, list[int]], measure: Measure
) -> tuple[str, str, str] | None:
    """``(question, reference, answer line)`` about ``rows``, or None when the drawn question
    has no single clear answer (a tie, a mean that ends in .5)."""
    kind = rng.choice(QUESTION_KINDS)
    totals = {city: sum(values) for city, values in rows.items()}
    distinct = len(set(totals.values())) == len(totals)
    city = rng.choice(list(rows))
    noun = measure.noun
    if kind == "highest_average":
        if not distinct:
            return None
        best = max(totals, key=totals.__getitem__)
        return f"Which city had the highest average {noun}?", best, CITY_ANSWER
    if kind == "lowest_total":
        if not distinct:
            return None
        least = min(totals, key=totals.__getitem__)
        return f"Which city had the lowest total {noun}?", least, CITY_ANSWER
    if kind == "total":
        return f"What was the total {noun} in {city}?", str(totals[city]), NUMBER_ANSWER
    if kind == "average":
        mean = Fraction(totals[city], len(rows[city]))
        if mean.denominator == 2:  # halfway between two whole numbers: no single rounding
            return None
        question = f"What was the average {noun} in {city}, rounded to a whole number?"
        return question, str(round(mean)), NUMBER_ANSWER
    if kind == "spread":
        spread = max(rows[city]) - min(rows[city])
        question = f"What was the difference between the highest and the lowest {noun} in {city}?"
        return question, str(spread), NUMBER_ANSWER
    if kind == "count_above":
        quarter = (measure.high - measure.low) // 4
        threshold = rng.randint(measure.low + quarter, measure.high - quarter)
        count = sum(v > threshold for values in rows.values() for v in values)
        question = f"How many numbers in the table are greater than {threshold}?"
        return question, str(count), NUMBER_ANSWER
    if not distinct:  # ranking
        return None
    order = sorted(totals, key=totals.__getitem__, reverse=True)
    question = f"List the cities from the highest to the lowest total {noun}."
    return question, ", ".join(order), RANKING_ANSWER


def _draw_table_question(rng: random.Random, level: TableLevel) -> Example | None:
    measure = rng.choice(MEASURES)
    cities = rng.sample(CITIES, level.cities)
    rows = {c: [rng.randint(measure.low, measure.high) for _ in range(level.days)] for c in cities}
    asked = _question(rng, rows, measure)
    if asked is None:
        return None
    question, reference, answer_line = asked
    table = "".join(f"{c}: {', '.join(map(str, values))}\n" for c, values in rows.items())
    prompt = f"{measure.title} over {level.days} days:\n{table}{question}\n{answer_line}"
    return Example(prompt, reference)


class DataChecker(IntegerChecker):
    """Scores the answer to a table question against ``reference``: an integer as text, or one
    or more city names separated by commas (a ranking).

    Numbers are read as :class:`~textgym.procedural.base.IntegerChecker` reads them. Names are
    compared in order and in any case, separated by commas, arrows and/or spaces (``"Oslo,
    lima"``); anything else in the answer (``"Oslo or Lima"``, ``"It is Oslo"``) is wrong, and
    an answer that is not a list of words (numbering, punctuation) a format error.
    """

    def judge(self, answer: str, reference: str) -> Verdict:
        if re.fullmatch(r"-?\d+", reference):
            return super().judge(answer, reference)
        items = split_items(answer)
        if items is None:
            return NO_ANSWER
        return RIGHT if items == split_items(reference) else WRONG_ANSWER


def data_question(
    difficulty: str = "medium", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Answer a question about a small table: ``"Which city had the highest average
    rainfall?"`` -> ``Lima``.

    ## Description

    A table of daily figures per city (rainfall in mm 0-60, museum visitors 100-999 or ice
    cream sales 10-300), one line per city (``Oslo: 31, 7, 52, 18``), and one question about
    it: which city had the highest average or the lowest total, a city's total, its average
    rounded to a whole number, the difference between its highest and lowest figure, how many
    numbers in the table exceed a threshold, or the cities ranked by their totals. Questions
    without a single clear answer (tied totals, a mean ending in .5) are not asked. A short
    Python program (``<python>...</python>``) answers each one exactly. Tables are drawn from
    ``seed``; train and test prompts are disjoint.

    ## Difficulty

    * ``"easy"``: 3 cities, 4 days.
    * ``"medium"``: 4 cities, 6 days.
    * ``"hard"``: 6 cities, 8 days.

    ## Rewards

    :class:`DataChecker`, in [0, 1]: 1 for the right number, city or ranking, 0 otherwise, and a
    format error for an answer that cannot be read as a number or a list of names.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: questions per split (5000 and 500).
    * ``seed``: the generator seed (0).
    """
    level = TABLE_LEVELS[check_difficulty(difficulty)]
    return Task(
        name="data_question",
        prompts=disjoint_splits(
            functools.partial(_draw_table_question, level=level),
            n_train,
            n_test,
            seed,
            "data_question",
        ),
        scorer=DataChecker(),
        reward_range=DataChecker.reward_range,
        description=f"answer a question about a table ({difficulty}): exact answers (1, 0)",
    )


TOOL_TASKS: dict[str, Callable[..., Task]] = {
    "tool_arithmetic": tool_arithmetic,
    "data_question": data_question,
}
"""Task name -> factory of the tasks the tool-use environments play."""

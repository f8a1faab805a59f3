"""Ordering puzzle: place people in a row from clues; the solution is unique (brute force)."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from textgym.procedural.base import (
    NO_ANSWER,
    RIGHT,
    WRONG_ANSWER,
    Checker,
    Verdict,
    check_difficulty,
    disjoint_splits,
    partial,
    split_items,
)
from textgym.tasks import Example, Task

NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Joe")
TEMPLATE = (
    "{people} stand in a row. {clues} List them from left to right, comma-separated.\nAnswer:"
)


@dataclass(frozen=True)
class Level:
    """How the puzzles of one difficulty are drawn."""

    people: int  # people in the row
    ends: bool  # whether "X is first/last" clues are used (they pin a person down at once)


LEVELS = {"easy": Level(3, True), "medium": Level(4, True), "hard": Level(5, False)}


class Clue(NamedTuple):
    """A statement about the row: its text with a ``{}`` for each person it names (``who``,
    indices into the sorted names) and the bit mask of the rows it holds in."""

    text: str
    who: tuple[int, ...]
    rows: int


@functools.cache
def _clue_table(people: int, ends: bool) -> tuple[list[tuple[int, ...]], list[Clue]]:
    """All rows (orders of the people ``0..people-1``) and every clue of the puzzle's kinds,
    each with the bit mask of the rows it holds in (bit ``r`` for ``rows[r]``)."""
    rows = list(itertools.permutations(range(people)))
    where = [{person: k for k, person in enumerate(row)} for row in rows]
    clues = []

    def add(text: str, who: tuple[int, ...], holds: Callable[..., bool]) -> None:
        """``holds(p, *who)`` with ``p`` a row's person -> place (0 is leftmost)."""
        clues.append(Clue(text, who, sum(1 << r for r, p in enumerate(where) if holds(p, *who))))

    for x, y in itertools.permutations(range(people), 2):
        add("{} is somewhere left of {}.", (x, y), lambda p, x, y: p[x] < p[y])
        add("{} is directly left of {}.", (x, y), lambda p, x, y: p[y] == p[x] + 1)
    for x, y in itertools.combinations(range(people), 2):
        add("{} is not next to {}.", (x, y), lambda p, x, y: abs(p[x] - p[y]) > 1)
    for x in range(people):
        for y, z in itertools.combinations(set(range(people)) - {x}, 2):
            add(
                "{} is between {} and {}.",
                (x, y, z),
                lambda p, x, y, z: min(p[y], p[z]) < p[x] < max(p[y], p[z]),
            )
        if ends:
            add("{} is first.", (x,), lambda p, x: p[x] == 0)
            add("{} is last.", (x,), lambda p, x: p[x] == people - 1)
    return rows, clues


def _draw(rng: random.Random, level: Level) -> Example:
    names = sorted(rng.sample(NAMES, level.people))
    rows, clues = _clue_table(level.people, level.ends)
    solution = rng.randrange(len(rows))
    true = [c for c in clues if c.rows >> solution & 1]
    rng.shuffle(true)
    everything = (1 << len(rows)) - 1

    def rows_left(chosen: list[Clue]) -> int:
        return functools.reduce(lambda mask, c: mask & c.rows, chosen, everything)

    chosen: list[Clue] = []
    for clue in true:  # add true clues until one row is left: the solution
        chosen.append(clue)
        if rows_left(chosen) == 1 << solution:
            break
    for clue in list(chosen):  # then drop every clue the others already imply
        rest = [c for c in chosen if c is not clue]
        if rows_left(rest) == 1 << solution:
            chosen = rest
    people = ", ".join(names[:-1]) + f" and {names[-1]}"
    text = " ".join(c.text.format(*(names[k] for k in c.who)) for c in chosen)
    row = ", ".join(names[k] for k in rows[solution])
    return Example(TEMPLATE.format(people=people, clues=text), row)


class OrderingChecker(Checker):
    """Scores a row of names against ``reference``, the solution's names comma-separated.

    Names may be separated by commas, spaces, ``->`` or "and", in any case. Correct (1.0): the
    solution. Partial (0.25): the solution with two neighbours swapped. Wrong (0): any other row,
    or missing, repeated or unknown names. Format error (0): items that are not plain words.
    """

    def judge(self, answer: str, reference: str) -> Verdict:
        items = split_items(answer)
        if items is None:
            return NO_ANSWER
        solution = reference.lower().split(", ")
        if items == solution:
            return RIGHT
        if sorted(items) != sorted(solution):
            return WRONG_ANSWER
        differ = [k for k in range(len(items)) if items[k] != solution[k]]
        swapped = len(differ) == 2 and differ[1] == differ[0] + 1
        return partial(0.25) if swapped else WRONG_ANSWER


def ordering_puzzle(
    difficulty: str = "easy", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Place people in a row from clues: ``"Ann, Bob and Cal stand in a row. Cal is first. Ann
    is not next to Cal."`` -> ``Cal, Bob, Ann``.

    ## Description

    A few people (three-letter names) stand in a row; clues say who is somewhere or directly
    left of whom, who is not next to whom, who is between two others and (easy and medium) who
    is first or last. Each puzzle is built from a random row: true clues are added until brute
    force over all orders leaves exactly one, then every clue the others imply is dropped, so
    the solution is unique and every clue is needed. Puzzles are drawn from ``seed``; train and
    test puzzles are disjoint.

    ## Difficulty

    * ``"easy"``: 3 people, all clue kinds.
    * ``"medium"``: 4 people, all clue kinds.
    * ``"hard"``: 5 people, no first/last clues (more steps of deduction).

    ## Rewards

    :class:`OrderingChecker`, in [0, 1]: 1 for the solution; 0.25 for the solution with two
    neighbours swapped; 0 otherwise and for answers that are not a list of names.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: puzzles per split (5000 and 500).
    * ``seed``: the generator seed (0).
    """
    level = LEVELS[check_difficulty(difficulty)]
    return Task(
        name="ordering_puzzle",
        prompts=disjoint_splits(
            functools.partial(_draw, level=level), n_train, n_test, seed, "ordering_puzzle"
        ),
        scorer=OrderingChecker(),
        reward_range=OrderingChecker.reward_range,
        description=f"ordering puzzle ({difficulty}): the row from clues (1, 0.25, 0)",
    )

"""Word sorting: put a few words in alphabetical order."""

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
    partial,
    split_items,
)
from textgym.procedural.words import WORDS
from textgym.tasks import Example, Task

TEMPLATE = "Sort these words alphabetically: {words}. Write them comma-separated.\nAnswer:"


@dataclass(frozen=True)
class Level:
    """How the questions of one difficulty are drawn."""

    words: int  # words to sort
    same_initial: int  # words that share their first letter (0: all first letters differ)


LEVELS = {"easy": Level(3, 0), "medium": Level(5, 2), "hard": Level(7, 3)}

_POOL = [w for w in WORDS if len(w) <= 8]  # short words keep the prompts short
_BY_INITIAL = {i: [w for w in _POOL if w[0] == i] for i in sorted({w[0] for w in _POOL})}


def inversions(items: list[str]) -> int:
    """Pairs of items out of alphabetical order (0 for a sorted list)."""
    return sum(a > b for k, a in enumerate(items) for b in items[k + 1 :])


def _draw(rng: random.Random, level: Level) -> Example | None:
    if level.same_initial:
        initial = rng.choice(list(_BY_INITIAL))
        if len(_BY_INITIAL[initial]) < level.same_initial:
            return None
        words = rng.sample(_BY_INITIAL[initial], level.same_initial)
        others = [w for w in _POOL if w[0] != initial]
        words += rng.sample(others, level.words - level.same_initial)
    else:
        words = [rng.choice(_BY_INITIAL[i]) for i in rng.sample(list(_BY_INITIAL), level.words)]
    rng.shuffle(words)
    if inversions(words) == 0:
        return None
    return Example(
        TEMPLATE.format(words=", ".join(words)), (", ".join(sorted(words)), ", ".join(words))
    )


class WordSortingChecker(Checker):
    """Scores a sorted list against ``reference = (sorted words, words as asked)``, both
    comma-separated.

    Items may be separated by commas and/or spaces, in any case (``"Apple fig, PEAR"``).
    Correct (1.0): exactly the asked words, sorted. Partial: the asked words, not sorted but
    with fewer out-of-order pairs than the question had: ``0.5 * (1 - inversions(answer) /
    inversions(question))``, in (0, 0.5); so repeating the question's order earns nothing.
    Wrong (0): other words, missing, repeated or extra words, or no better than the question.
    Format error (0): items that are not plain words (numbering, a sentence).
    """

    def judge(self, answer: str, reference: tuple[str, str]) -> Verdict:
        items = split_items(answer)
        if items is None:
            return NO_ANSWER
        target, asked = (r.split(", ") for r in reference)
        if sorted(items) != target:
            return WRONG_ANSWER
        if items == target:
            return RIGHT
        left, before = inversions(items), inversions(asked)
        return partial(0.5 * (1 - left / before)) if left < before else WRONG_ANSWER


def word_sorting(
    difficulty: str = "easy", n_train: int = 5000, n_test: int = 500, seed: int = 0
) -> Task:
    """Sort words alphabetically: ``"Sort these words alphabetically: pear, apple, fig."`` ->
    ``apple, fig, pear``.

    ## Description

    A few words of up to 8 letters from the built-in word list
    (:data:`textgym.procedural.words.WORDS`), in an order that is not sorted; the answer lists
    them in alphabetical order. Questions are drawn from ``seed``; train and test questions are
    disjoint.

    ## Difficulty

    * ``"easy"``: 3 words with different first letters.
    * ``"medium"``: 5 words, at least 2 of them with the same first letter.
    * ``"hard"``: 7 words, at least 3 of them with the same first letter (later letters
      decide).

    ## Rewards

    :class:`WordSortingChecker`, in [0, 1]: 1 for the sorted words; partial credit up to 0.5
    for the right words in an order closer to sorted than the question's (the share of its
    out-of-order pairs that were fixed, times 0.5); 0 otherwise (wrong, missing or extra words,
    the question's order repeated) and for answers that are not a list of words.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: questions per split (5000 and 500).
    * ``seed``: the generator seed (0).

    The reference of each example is ``(sorted words, words as asked)``, both comma-separated.
    """
    level = LEVELS[check_difficulty(difficulty)]
    return Task(
        name="word_sorting",
        prompts=disjoint_splits(
            functools.partial(_draw, level=level), n_train, n_test, seed, "word_sorting"
        ),
        scorer=WordSortingChecker(),
        reward_range=WordSortingChecker.reward_range,
        description=f"sort words alphabetically ({difficulty}) (1, partial up to 0.5, 0)",
    )

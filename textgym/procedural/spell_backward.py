"""Spelling backward: write a word's letters in reverse order."""

from __future__ import annotations

import re

from textgym.procedural.base import (
    NO_ANSWER,
    RIGHT,
    WRONG_ANSWER,
    Checker,
    Verdict,
    check_difficulty,
    partial,
    pool_splits,
)
from textgym.procedural.words import WORDS
from textgym.tasks import Example, Task

TEMPLATE = 'Spell the word "{word}" backward. Write the reversed word alone.\nAnswer:'

LEVELS = {"easy": (3, 5), "medium": (6, 7), "hard": (8, 12)}
"""Word lengths (inclusive) of each difficulty."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions from a to b."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _words(difficulty: str) -> list[str]:
    """The words of a difficulty whose reversal is at least 2 edits from the word itself, so
    that echoing the word never earns credit (no palindromes such as "noon")."""
    low, high = LEVELS[difficulty]
    return [w for w in WORDS if low <= len(w) <= high and edit_distance(w, w[::-1]) >= 2]


class SpellBackwardChecker(Checker):
    """Scores a reversed word against ``reference``, the reversed word.

    Case, spaces, hyphens, commas and periods between letters are ignored (``"Y-R-R-E-B"``,
    ``"y r r e b"``). Correct (1.0): the reversed word. Partial (0.5): one edit (a letter added,
    dropped or changed) away. Wrong (0): anything else made of letters. Format error (0):
    characters other than letters and those separators.
    """

    def judge(self, answer: str, reference: str) -> Verdict:
        letters = re.sub(r"[\s\-,.]+", "", answer.lower())
        if not letters.isalpha():
            return NO_ANSWER
        if letters == reference:
            return RIGHT
        return partial(0.5) if edit_distance(letters, reference) == 1 else WRONG_ANSWER


def spell_backward(
    difficulty: str = "easy", n_train: int = 2000, n_test: int = 200, seed: int = 0
) -> Task:
    """Spell a word backward: ``'Spell the word "strawberry" backward.'`` -> ``yrrebwarts``.

    ## Description

    A word from the built-in word list (:data:`textgym.procedural.words.WORDS`); the answer is
    its letters in reverse order. Words whose reversal is within one edit of the word (such as
    palindromes) are left out, so repeating the word earns nothing. A fifth of the words are
    test words (chosen by a hash of the prompt, the same for every seed), the rest train
    words; each split is its words shuffled with ``seed``, so the splits are disjoint.

    ## Difficulty

    Word length: ``"easy"`` 3-5 letters (about 400 words), ``"medium"`` 6-7 (about 180),
    ``"hard"`` 8-12 (about 125). The splits are capped by these counts (a fifth is the test
    split).

    ## Rewards

    :class:`SpellBackwardChecker`, in [0, 1]: 1 for the reversed word (any case, letters may be
    separated by spaces or hyphens), 0.5 for one edit away, 0 otherwise and for text that is not
    a spelled word.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: words per split (2000 and 200, capped as above).
    * ``seed``: the generator seed (0).
    """
    pool = [
        Example(TEMPLATE.format(word=word), word[::-1])
        for word in _words(check_difficulty(difficulty))
    ]
    return Task(
        name="spell_backward",
        prompts=pool_splits(pool, n_train, n_test, seed, "spell_backward"),
        scorer=SpellBackwardChecker(),
        reward_range=SpellBackwardChecker.reward_range,
        description=f"spell a word backward ({difficulty}) (1, 0.5 one edit off, 0)",
    )

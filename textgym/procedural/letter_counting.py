"""Letter counting: how many times a letter appears in a word or a short phrase."""

from __future__ import annotations

import functools
import random
import string
from collections import Counter
from dataclasses import dataclass

from textgym.procedural.base import IntegerChecker, check_difficulty, disjoint_splits
from textgym.procedural.words import WORDS
from textgym.tasks import Example, Task

TEMPLATE = (
    'How many times does the letter "{letter}" appear in "{text}"? Write the number alone.\nAnswer:'
)


@dataclass(frozen=True)
class Level:
    """How the questions of one difficulty are drawn."""

    words: int  # words in the text
    lengths: tuple[int, int]  # word lengths, inclusive
    counts: tuple[int, ...]  # the answers, drawn uniformly (0: a letter absent from the text)


LEVELS = {
    "easy": Level(1, (4, 7), (1, 2)),
    "medium": Level(1, (7, 12), (0, 1, 2, 3)),
    "hard": Level(3, (4, 9), (0, 1, 2, 3, 4, 5)),
}


def _draw(rng: random.Random, level: Level, pool: list[str]) -> Example:
    # The answer is drawn first, so every count of the level is equally likely: a constant
    # answer scores 1/len(counts), not the share of letters that occur once.
    target = rng.choice(level.counts)
    for _ in range(10_000):
        text = " ".join(rng.sample(pool, level.words))
        counts = Counter(text.replace(" ", ""))
        if target == 0:
            letters = sorted(set(string.ascii_lowercase) - set(counts))
        else:
            letters = sorted(letter for letter, n in counts.items() if n == target)
        if letters:
            letter = rng.choice(letters)
            return Example(TEMPLATE.format(letter=letter, text=text), str(target))
    raise RuntimeError(f"no text of the word list has a letter {target} times ({level})")


class LetterCountChecker(IntegerChecker):
    """Scores a count: 1 if right, 0.25 if off by one, else 0; a format error when the answer is
    not one integer (digits or a number word such as ``"three"``)."""

    partial_score = 0.25

    def near(self, answer: int, truth: int) -> bool:
        return abs(answer - truth) == 1


def letter_counting(
    difficulty: str = "easy", n_train: int = 2000, n_test: int = 200, seed: int = 0
) -> Task:
    """Count a letter: ``'How many times does the letter "r" appear in "strawberry"?'`` -> 3.

    ## Description

    A letter and a word (or phrase) from the built-in word list
    (:data:`textgym.procedural.words.WORDS`); the answer is how often the letter occurs.
    Questions are drawn from ``seed``; train and test questions are disjoint.

    ## Difficulty

    The answer is drawn first, uniformly over the level's counts, so no constant answer does
    better than one in two (easy), four (medium) or six (hard).

    * ``"easy"``: one word of 4-7 letters; the letter occurs once or twice.
    * ``"medium"``: one word of 7-12 letters; 0 to 3 times (0: a letter not in the word).
    * ``"hard"``: three words of 4-9 letters, the count over all of them; 0 to 5 times.

    ## Rewards

    :class:`LetterCountChecker`, in [0, 1]: 1 for the right count, 0.25 for one off, 0 otherwise
    and for anything that is not one integer (``"3 or 4"``). ``"3"``, ``"Answer: 3."`` and
    ``"three"`` are read alike.

    ## Arguments

    * ``difficulty``: ``"easy"``, ``"medium"`` or ``"hard"`` (see Difficulty).
    * ``n_train`` / ``n_test``: questions per split (2000 and 200), made on demand and drawn
      with replacement (a question may repeat within a split, never across splits).
    * ``seed``: the generator seed (0).
    """
    level = LEVELS[check_difficulty(difficulty)]
    low, high = level.lengths
    pool = [w for w in WORDS if low <= len(w) <= high]
    return Task(
        name="letter_counting",
        prompts=disjoint_splits(
            functools.partial(_draw, level=level, pool=pool),
            n_train,
            n_test,
            seed,
            "letter_counting",
        ),
        scorer=LetterCountChecker(),
        reward_range=LetterCountChecker.reward_range,
        description=f"letter counting ({difficulty}): the exact count (1, 0.25 one off, 0)",
    )

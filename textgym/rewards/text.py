"""Heuristic text scorers: no reference answer, no model (or a rule-based one).

* :class:`VaderSentiment`: VADER's rule-based sentiment, the reward of ``TextGen-v0``;
* :class:`ConceptCoverage`: the share of required concepts used in any inflection
  (:func:`word_forms`; irregular forms come from ``data/inflections.json``);
* :class:`Fluency`: no repeats, plain words, a sane length;
* :class:`LengthPenalty` and :class:`RepetitionPenalty`: non-positive penalties.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

from textgym.rewards.base import BaseScorer, as_text

# -- sentiment ---------------------------------------------------------------------------------


class VaderSentiment(BaseScorer):
    """VADER compound sentiment of the completion, in [-1, 1] (vaderSentiment).

    Rule-based and fast (about 10k short texts per second on one core), so it is the default
    reward of ``TextGen-v0``. The prompt is not scored: only what the agent wrote counts.
    """

    reward_range = (-1.0, 1.0)

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score_one(self, prompt, completion, references):
        return self._analyzer.polarity_scores(completion)["compound"]


# -- concept coverage (CommonGen-like keyword task) --------------------------------------------

_VOWELS = set("aeiou")


@functools.cache
def _irregular_forms() -> dict[str, frozenset[str]]:
    """Irregular inflections, read once from ``data/inflections.json``: ``verbs`` maps a lemma
    to its inflected forms (``"run": ["ran"]``), ``nouns`` a singular to its plurals."""
    text = (resources.files("textgym.rewards") / "data" / "inflections.json").read_text("utf-8")
    table = json.loads(text)
    return {w: frozenset(forms) for section in table.values() for w, forms in section.items()}


def word_forms(lemma: str) -> set[str]:
    """The lemma and its regular and irregular inflections (plural, 3rd person, -ed, -ing).

    ``word_forms("run") >= {"run", "runs", "ran", "running"}``; over-generation (e.g.
    ``"runned"``) is harmless because only words that appear in a text are looked up.
    """
    w = lemma.lower().strip()
    forms = {w, w + "s", w + "es", w + "ed", w + "d", w + "ing"}
    if w.endswith("y") and len(w) > 1 and w[-2] not in _VOWELS:
        forms |= {w[:-1] + "ies", w[:-1] + "ied"}
    if w.endswith("e"):
        forms |= {w[:-1] + "ing"}
    if w.endswith("ie"):
        forms |= {w[:-2] + "ying"}
    if (
        len(w) >= 3
        and w[-1] not in _VOWELS | {"w", "x", "y"}
        and w[-2] in _VOWELS
        and w[-3] not in _VOWELS
    ):
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing", w + w[-1] + "er"}
    if w.endswith("f"):
        forms.add(w[:-1] + "ves")
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    forms |= _irregular_forms().get(w, frozenset())
    return forms


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of ``text`` (``"it's"`` stays one word)."""
    return [w.lower() for w in _WORD.findall(as_text(text))]


class ConceptCoverage(BaseScorer):
    """Fraction of the required concepts that the completion uses, in [0, 1].

    The references are the concepts (lemmas, e.g. ``("dog", "chase", "ball")``); a concept
    counts when any inflection of it (:func:`word_forms`: plurals, -s/-ed/-ing, common
    irregular forms such as ran/caught/children/leaves) appears as a word of the completion,
    case-insensitively. A multi-word concept counts when all its words appear. An example
    without concepts scores 0.
    """

    reward_range = (0.0, 1.0)

    def score_one(self, prompt, completion, references):
        if not references:
            return 0.0
        present = set(words(completion))
        present |= {w[:-2] for w in present if w.endswith("'s")}
        hits = 0
        for concept in references:
            parts = concept.lower().split()
            hits += bool(parts) and all(word_forms(p) & present for p in parts)
        return hits / len(references)


class Fluency(BaseScorer):
    """A cheap fluency heuristic in [0, 1] (no model): the mean of three terms.

    * ``1 - `` the fraction of repeated word bigrams (see :class:`RepetitionPenalty`);
    * the share of whitespace-separated pieces that are plain words (letters with optional
      trailing punctuation) -- random tokens rarely are;
    * 1 if the text has ``min_words``..``max_words`` words, else 0.

    An empty completion scores 0. Use ``LMScore`` for a model-based fluency signal.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, min_words: int = 3, max_words: int = 40):
        self.min_words = min_words
        self.max_words = max_words

    def score_one(self, prompt, completion, references):
        pieces = completion.split()
        if not pieces:
            return 0.0
        plain = sum(bool(re.fullmatch(r"[A-Za-z][a-z']*[.,!?;:]?", p)) for p in pieces) / len(
            pieces
        )
        ws = words(completion)
        no_repeat = 1.0 - _repeated_fraction(ws, 2) if ws else 0.0
        length_ok = float(self.min_words <= len(ws) <= self.max_words)
        return (no_repeat + plain + length_ok) / 3.0


# -- length and repetition ---------------------------------------------------------------------


def _length(text: str, unit: str, tokenizer: Any) -> int:
    if unit == "words":
        return len(text.split())
    if unit == "chars":
        return len(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class LengthPenalty(BaseScorer):
    """A non-positive penalty for completions away from a target length.

    Args:
        target: the ideal length; the penalty is ``-scale * |n - target|``. If None, only the
            bounds apply.
        min_length / max_length: the penalty is ``-scale * (distance outside the bounds)``
            (added to the target term).
        unit: ``"words"`` (default, whitespace-separated), ``"chars"`` or ``"tokens"`` (needs
            ``tokenizer``).
        scale: multiplies the distance (default ``1 / target`` when a target is given, so the
            penalty is relative, else 1).
    """

    reward_range = (-float("inf"), 0.0)

    def __init__(
        self,
        target: int | None = None,
        min_length: int = 0,
        max_length: int | None = None,
        unit: str = "words",
        scale: float | None = None,
        tokenizer: Any = None,
    ):
        if unit not in ("words", "chars", "tokens"):
            raise ValueError(f"unit must be 'words', 'chars' or 'tokens', got {unit!r}")
        if unit == "tokens" and tokenizer is None:
            raise ValueError("unit='tokens' needs a tokenizer")
        self.target, self.min_length, self.max_length = target, min_length, max_length
        self.unit = unit
        self.scale = scale if scale is not None else (1.0 / target if target else 1.0)
        self._tokenizer = tokenizer

    def score_one(self, prompt, completion, references):
        n = _length(completion, self.unit, self._tokenizer)
        distance = abs(n - self.target) if self.target is not None else 0
        distance += max(0, self.min_length - n)
        if self.max_length is not None:
            distance += max(0, n - self.max_length)
        return -self.scale * distance


def _repeated_fraction(items: list[str], n: int) -> float:
    grams = [tuple(items[i : i + n]) for i in range(len(items) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class RepetitionPenalty(BaseScorer):
    """``-`` the fraction of the completion's n-grams that repeat an earlier one, in [-1, 0].

    Args:
        n: n-gram size (default 3).
        unit: ``"words"`` (default) or ``"chars"``.

    "the cat the cat the cat" has word bigrams (the cat) x3 and (cat the) x2: 3 of 5 repeat,
    so ``RepetitionPenalty(n=2)`` gives -0.6. Texts shorter than ``n`` score 0.
    """

    reward_range = (-1.0, 0.0)

    def __init__(self, n: int = 3, unit: str = "words"):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if unit not in ("words", "chars"):
            raise ValueError(f"unit must be 'words' or 'chars', got {unit!r}")
        self.n, self.unit = n, unit

    def score_one(self, prompt, completion, references):
        items = completion.split() if self.unit == "words" else list(completion)
        return -_repeated_fraction(items, self.n)

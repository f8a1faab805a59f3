"""Matching metrics: how close a completion is to its reference(s).

* exact answers: :class:`ExactMatch` and :class:`TokenF1` (SQuAD normalisation,
  :func:`normalize_answer`), :class:`NumericMatch` (:func:`extract_number`), and
  :class:`PositionAccuracy` for the character-level algorithmic tasks;
* wrappers of the standard metrics, imported when first built (the ``metrics`` extra):
  sacrebleu's :class:`BLEU`, :class:`ChrF` and :class:`TER`, and rouge-score's :class:`Rouge`.

With several references, the best-matching one counts.
"""

from __future__ import annotations

import importlib
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from textgym.rewards.base import BaseScorer, as_text, max_over_references

# -- exact answers -----------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and the articles a/an/the, collapse
    whitespace. ``normalize_answer("The  Eiffel Tower!") == "eiffel tower"``."""
    text = as_text(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _normalizer(mode: str) -> Callable[[str], str]:
    if mode == "squad":
        return normalize_answer
    if mode == "whitespace":
        return lambda s: " ".join(s.lower().split())
    if mode == "none":
        return lambda s: s
    raise ValueError(f"normalize must be 'squad', 'whitespace' or 'none', got {mode!r}")


class ExactMatch(BaseScorer):
    """1.0 when the completion equals a reference after normalisation, else 0.0.

    Args:
        normalize: ``"squad"`` (default: lower case, no punctuation, no articles, single
            spaces), ``"whitespace"`` (lower case and collapsed/stripped whitespace only) or
            ``"none"`` (exact string equality).

    An example without a reference scores 0.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, normalize: str = "squad"):
        self.normalize = normalize
        self._norm = _normalizer(normalize)

    def score_one(self, prompt, completion, references):
        c = self._norm(completion)
        return max_over_references(references, lambda r: float(c == self._norm(r)))


def _f1(prediction: list[str], truth: list[str]) -> float:
    if not prediction or not truth:
        return float(prediction == truth)
    common = Counter(prediction) & Counter(truth)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(truth)
    return 2 * precision * recall / (precision + recall)


class TokenF1(BaseScorer):
    """SQuAD token F1 between the completion and the best reference, in [0, 1].

    Both are normalised with :func:`normalize_answer` and split on whitespace; the F1 of the
    bags of tokens is computed against each reference and the maximum kept. Two empty answers
    score 1, an empty answer against a non-empty one 0.
    """

    reward_range = (0.0, 1.0)

    def score_one(self, prompt, completion, references):
        c = normalize_answer(completion).split()
        return max_over_references(references, lambda r: _f1(c, normalize_answer(r).split()))


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*)?\.?\d+(?:[eE][-+]?\d+)?")


def extract_number(text: str, which: str = "first") -> float | None:
    """The first (or last) number written in ``text``, or ``None``.

    Accepts signs, decimals, exponents and thousands separators (``"1,234"`` -> 1234).
    """
    found = _NUMBER.findall(as_text(text))
    if not found:
        return None
    token = found[0] if which == "first" else found[-1]
    try:
        return float(token.replace(",", ""))
    except ValueError:
        return None


class NumericMatch(BaseScorer):
    """1.0 when the number in the completion equals the reference number, else 0.0.

    Args:
        which: read the ``"first"`` (default) or ``"last"`` number of the completion.
        tolerance: absolute tolerance of the comparison (default ``1e-6``).
        partial_credit: if True, a wrong number scores
            ``0.5 * max(0, 1 - |pred - ref| / max(|ref|, 1))`` instead of 0, so near misses
            earn something. A completion without a number always scores 0.

    The reference is a number written as a string (``"82"``); an unparsable reference scores 0.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, which: str = "first", tolerance: float = 1e-6, partial_credit: bool = False):
        if which not in ("first", "last"):
            raise ValueError(f"which must be 'first' or 'last', got {which!r}")
        self.which = which
        self.tolerance = tolerance
        self.partial_credit = partial_credit

    def score_one(self, prompt, completion, references):
        pred = extract_number(completion, self.which)
        if pred is None:
            return 0.0

        def one(ref: str) -> float:
            truth = extract_number(ref)
            if truth is None:
                return 0.0
            err = abs(pred - truth)
            if err <= self.tolerance:
                return 1.0
            if self.partial_credit:
                return 0.5 * max(0.0, 1.0 - err / max(abs(truth), 1.0))
            return 0.0

        return max_over_references(references, one)


class PositionAccuracy(BaseScorer):
    """Character accuracy by position, in [0, 1], for the algorithmic tasks.

    ``sum(c[i] == t[i]) / max(len(t), len(c))``: characters in the right place, divided by the
    longer of the two strings, so writing too much is penalised as much as writing too little.
    An empty completion scores 0 (1 if the target is empty too). With several references the
    best is kept; leading/trailing whitespace is kept unless ``strip=True``.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, strip: bool = False):
        self.strip = strip

    def score_one(self, prompt, completion, references):
        c = completion.strip() if self.strip else completion

        def one(t: str) -> float:
            t = t.strip() if self.strip else t
            longest = max(len(t), len(c))
            if longest == 0:
                return 1.0
            return sum(a == b for a, b in zip(c, t)) / longest

        return max_over_references(references, one)


# -- sacrebleu and rouge-score (imported lazily: the `metrics` extra) ---------------------------


def _require(module: str, extra: str = "metrics") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = {"sacrebleu": "sacrebleu", "rouge_score": "rouge-score"}.get(module, module)
        raise ImportError(
            f"this scorer needs {package}: pip install {package} (or textgym[{extra}])"
        ) from e


class _SacreBleuScorer(BaseScorer):
    _metric_name = ""

    def __init__(self, scale: float = 1.0, **options: Any):
        _require("sacrebleu")
        self.scale = scale
        self.options = options
        self._metric = None
        self.reward_range = (0.0, 100.0 * scale)

    def score_one(self, prompt, completion, references):
        # BLEU and chrF: 0 for nothing to compare, else the score clipped to [0, 100], scaled.
        if not completion.strip() or not references:
            return 0.0
        return self.scale * min(100.0, max(0.0, self._raw(completion, references)))

    def _make(self) -> Any:
        metrics = importlib.import_module("sacrebleu.metrics")
        return getattr(metrics, self._metric_name)(**self.options)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_metric": None}

    def _raw(self, completion: str, references: tuple[str, ...]) -> float:
        if self._metric is None:
            self._metric = self._make()
        return float(self._metric.sentence_score(completion, list(references)).score)


class BLEU(_SacreBleuScorer):
    """Sentence BLEU (sacrebleu, ``effective_order=True`` so short sentences are not zeroed),
    in [0, 100] times ``scale``. Options go to ``sacrebleu.metrics.BLEU`` (e.g.
    ``tokenize="intl"``, ``lowercase=True``). An empty completion or no reference scores 0.
    """

    _metric_name = "BLEU"

    def __init__(self, scale: float = 1.0, **options: Any):
        options.setdefault("effective_order", True)
        super().__init__(scale, **options)


class ChrF(_SacreBleuScorer):
    """Sentence chrF (sacrebleu; ``word_order=2`` gives chrF++), in [0, 100] times ``scale``.
    Character n-grams make it kinder than BLEU to short sentences and inflections. An empty
    completion or no reference scores 0.
    """

    _metric_name = "CHRF"


class TER(_SacreBleuScorer):
    """Translation edit rate (sacrebleu), ``>= 0`` times ``scale``: edits per reference word,
    LOWER is better (0 for an exact match). Use a negative weight in :class:`WeightedSum` to
    reward it. An empty completion scores 100 (every reference word must be inserted); no
    reference scores 0.
    """

    _metric_name = "TER"

    def __init__(self, scale: float = 1.0, **options: Any):
        super().__init__(scale, **options)
        self.reward_range = (0.0, float("inf"))

    def score_one(self, prompt, completion, references):
        if not references:
            return 0.0
        return self.scale * max(0.0, self._raw(completion, references))


class Rouge(BaseScorer):
    """ROUGE (rouge-score) of the completion against the best reference, in [0, 1].

    Args:
        kind: ``"rouge1"``, ``"rouge2"``, ``"rougeL"`` (default) or ``"rougeLsum"``, or a
            tuple of them (their mean).
        measure: ``"fmeasure"`` (default), ``"precision"`` or ``"recall"``.
        use_stemmer: Porter stemming before matching (default True).

    Empty or disjoint texts score 0; identical texts 1.
    """

    reward_range = (0.0, 1.0)

    def __init__(
        self,
        kind: str | Sequence[str] = "rougeL",
        measure: str = "fmeasure",
        use_stemmer: bool = True,
    ):
        _require("rouge_score")
        self.kind = (kind,) if isinstance(kind, str) else tuple(kind)
        if measure not in ("fmeasure", "precision", "recall"):
            raise ValueError(f"measure must be fmeasure, precision or recall, got {measure!r}")
        self.measure = measure
        self.use_stemmer = use_stemmer
        self._scorer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_scorer": None}

    def score_one(self, prompt, completion, references):
        if not completion.strip() or not references:
            return 0.0
        if self._scorer is None:
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer(list(self.kind), use_stemmer=self.use_stemmer)

        def one(ref: str) -> float:
            scores = self._scorer.score(ref, completion)
            return float(np.mean([getattr(scores[k], self.measure) for k in self.kind]))

        return max_over_references(references, one)

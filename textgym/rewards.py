"""Reward functions: batched scorers of (prompt, completion, reference) triples.

Every scorer is a callable ``scorer(prompts, completions, references) -> np.ndarray`` returning
one float32 score per completion. Scorers take whole batches because the vector environment
scores every episode that ended in a step with one call.

:func:`run_scorer` is how the environments call a scorer: it checks the output (shape, finite
values) and turns any failure into a :class:`~textgym.errors.ScorerError` that names the task,
the bad value and the offending text, so a broken reward never passes silently into training.

Scorers (all take ``(prompts, completions, references)`` and return float32 arrays):

=====================  ======================================================  ============
scorer                 score                                                   range
=====================  ======================================================  ============
``ExactMatch``         1 if the normalised completion equals a reference        [0, 1]
``TokenF1``            SQuAD token F1                                           [0, 1]
``NumericMatch``       1 if the first number equals the reference (partial)     [0, 1]
``PositionAccuracy``   characters right at the right position / longer length   [0, 1]
``ConceptCoverage``    share of required concepts used (inflection-tolerant)    [0, 1]
``Fluency``            cheap heuristic: no repeats, plain words, sane length    [0, 1]
``BLEU`` / ``ChrF``    sacrebleu sentence scores (times ``scale``)              [0, 100]
``TER``                sacrebleu edit rate, lower is better                     [0, inf)
``Rouge``              rouge-score ROUGE-1/2/L F-measure                        [0, 1]
``VaderSentiment``     VADER compound sentiment                                 [-1, 1]
``LMScore``            mean/sum log-likelihood or perplexity under a ref. LM    (-inf, 0]
``LMJudge``            log-odds of two answers of a reference LM                real
``LengthPenalty``      -distance from a target length / outside bounds          (-inf, 0]
``RepetitionPenalty``  -share of repeated n-grams                               [-1, 0]
``WeightedSum``        sum of weighted scorers                                  --
=====================  ======================================================  ============

Every scorer accepts ``None`` and ``bytes`` completions (``None`` is the empty string, bytes are
decoded as UTF-8 with replacement characters), a reference that is a string, a tuple/list of
strings (the best-matching reference counts) or ``None`` (documented per scorer), and raises a
clear ``ValueError`` when the three sequences differ in length.
"""

from __future__ import annotations

import importlib
import numbers
import re
import string
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from textgym.errors import ScorerError, ScorerTimeoutError
from textgym.tasks import Reference, Scorer


class VaderSentiment:
    """VADER compound sentiment of the completion, in [-1, 1] (vaderSentiment).

    Rule-based and fast (about 10k short texts per second on one core), so it is the default
    reward of ``TextGen-v0``. The prompt is not scored: only what the agent wrote counts.
    """

    reward_range = (-1.0, 1.0)

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        references: Sequence[Reference],
    ) -> np.ndarray:
        return np.array(
            [self._analyzer.polarity_scores(as_text(text))["compound"] for text in completions],
            dtype=np.float32,
        )


# ---------------------------------------------------------------------------------------------
# Input hygiene shared by every scorer
# ---------------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A completion or prompt as ``str``: ``None`` -> ``""``, ``bytes`` decoded as UTF-8 with
    invalid bytes replaced (U+FFFD), anything else ``str(value)``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def as_references(reference: Reference | Sequence[str]) -> tuple[str, ...]:
    """One example's reference(s) as a tuple of strings: ``None`` -> ``()``, a string -> a
    one-element tuple, a list/tuple -> its items as strings (``None`` items dropped)."""
    if reference is None:
        return ()
    if isinstance(reference, (str, bytes, bytearray)):
        return (as_text(reference),)
    return tuple(as_text(r) for r in reference if r is not None)


def scorer_batch(
    prompts: Sequence[Any] | None,
    completions: Sequence[Any],
    references: Sequence[Any] | None,
) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    """A scorer call's batch as text (references as tuples of strings), after checking that the
    three sequences have the same length; every scorer starts with it."""
    if isinstance(completions, (str, bytes)):
        raise TypeError("completions must be a sequence of strings (a batch), not one string")
    completions = [as_text(c) for c in completions]
    n = len(completions)
    prompts = [""] * n if prompts is None else [as_text(p) for p in prompts]
    references = [()] * n if references is None else [as_references(r) for r in references]
    if len(prompts) != n or len(references) != n:
        raise ValueError(
            f"a scorer batch needs as many prompts and references as completions: got "
            f"{len(prompts)} prompts, {n} completions and {len(references)} references"
        )
    return prompts, completions, references


class _Scorer:
    """Base class: ``__call__(prompts, completions, references) -> float32 (n,)``.

    Subclasses implement :meth:`score_one` (or override :meth:`__call__` to batch).
    """

    #: the range the scores lie in (documentation, and ``Task.reward_range``)
    reward_range: tuple[float, float] = (-float("inf"), float("inf"))

    def score_one(self, prompt: str, completion: str, references: tuple[str, ...]) -> float:
        raise NotImplementedError

    def __call__(
        self,
        prompts: Sequence[Any] | None,
        completions: Sequence[Any],
        references: Sequence[Any] | None = None,
    ) -> np.ndarray:
        prompts, completions, references = scorer_batch(prompts, completions, references)
        return np.array(
            [self.score_one(p, c, r) for p, c, r in zip(prompts, completions, references)],
            dtype=np.float32,
        )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def _best(references: tuple[str, ...], score: Callable[[str], float], empty: float = 0.0) -> float:
    """Max over references (multi-reference scoring); ``empty`` when there is none."""
    return max((score(r) for r in references), default=empty)


# ---------------------------------------------------------------------------------------------
# String matching
# ---------------------------------------------------------------------------------------------

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


class ExactMatch(_Scorer):
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
        return _best(references, lambda r: float(c == self._norm(r)))


def _f1(prediction: list[str], truth: list[str]) -> float:
    if not prediction or not truth:
        return float(prediction == truth)
    common = Counter(prediction) & Counter(truth)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(truth)
    return 2 * precision * recall / (precision + recall)


class TokenF1(_Scorer):
    """SQuAD token F1 between the completion and the best reference, in [0, 1].

    Both are normalised with :func:`normalize_answer` and split on whitespace; the F1 of the
    bags of tokens is computed against each reference and the maximum kept. Two empty answers
    score 1, an empty answer against a non-empty one 0.
    """

    reward_range = (0.0, 1.0)

    def score_one(self, prompt, completion, references):
        c = normalize_answer(completion).split()
        return _best(references, lambda r: _f1(c, normalize_answer(r).split()))


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


class NumericMatch(_Scorer):
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

        return _best(references, one)


class PositionAccuracy(_Scorer):
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

        return _best(references, one)


# ---------------------------------------------------------------------------------------------
# Concept coverage (CommonGen-like keyword task)
# ---------------------------------------------------------------------------------------------

_IRREGULAR = {
    # verbs: lemma -> inflected forms
    "be": "am is are was were been being",
    "have": "has had having",
    "do": "does did done doing",
    "go": "goes went gone going",
    "eat": "ate eaten",
    "drink": "drank drunk",
    "sing": "sang sung",
    "swim": "swam swum",
    "run": "ran",
    "ride": "rode ridden",
    "write": "wrote written",
    "drive": "drove driven",
    "throw": "threw thrown",
    "catch": "caught",
    "teach": "taught",
    "buy": "bought",
    "bring": "brought",
    "think": "thought",
    "fight": "fought",
    "sell": "sold",
    "tell": "told",
    "hold": "held",
    "find": "found",
    "build": "built",
    "send": "sent",
    "spend": "spent",
    "lend": "lent",
    "bend": "bent",
    "lose": "lost",
    "leave": "left",
    "feel": "felt",
    "keep": "kept",
    "sleep": "slept",
    "sweep": "swept",
    "meet": "met",
    "feed": "fed",
    "lead": "led",
    "read": "read",
    "hear": "heard",
    "make": "made",
    "say": "said",
    "pay": "paid",
    "lay": "laid",
    "lie": "lay lain lying",
    "sit": "sat",
    "stand": "stood",
    "understand": "understood",
    "win": "won",
    "dig": "dug",
    "hang": "hung hanged",
    "swing": "swung",
    "spin": "spun",
    "stick": "stuck",
    "strike": "struck",
    "get": "got gotten",
    "give": "gave given",
    "take": "took taken",
    "shake": "shook shaken",
    "wake": "woke woken",
    "break": "broke broken",
    "speak": "spoke spoken",
    "steal": "stole stolen",
    "choose": "chose chosen",
    "freeze": "froze frozen",
    "fly": "flew flown flies",
    "grow": "grew grown",
    "blow": "blew blown",
    "know": "knew known",
    "draw": "drew drawn",
    "show": "showed shown",
    "see": "saw seen",
    "come": "came",
    "become": "became",
    "begin": "began begun",
    "ring": "rang rung",
    "sink": "sank sunk",
    "shrink": "shrank shrunk",
    "fall": "fell fallen",
    "forget": "forgot forgotten",
    "bite": "bit bitten",
    "hide": "hid hidden",
    "rise": "rose risen",
    "shine": "shone shined",
    "wear": "wore worn",
    "tear": "tore torn",
    "bear": "bore borne",
    "shoot": "shot",
    "light": "lit lighted",
    "dive": "dove dived",
    "cut": "cut",
    "hit": "hit",
    "put": "put",
    "set": "set",
    "shut": "shut",
    "let": "let",
    "hurt": "hurt",
    "cost": "cost",
    "quit": "quit",
    "shear": "shore shorn sheared",
    "deal": "dealt",
    "mean": "meant",
    "burn": "burnt burned",
    "learn": "learnt learned",
    "smell": "smelt smelled",
    "spell": "spelt spelled",
    "dream": "dreamt dreamed",
    "kneel": "knelt",
    "weep": "wept",
    "creep": "crept",
    "seek": "sought",
    "fling": "flung",
    "slide": "slid",
    "bleed": "bled",
    "breed": "bred",
    "flee": "fled",
    "forgive": "forgave forgiven",
    "climb": "climbed",
    # nouns: singular -> plural
    "child": "children",
    "man": "men",
    "woman": "women",
    "person": "people",
    "foot": "feet",
    "tooth": "teeth",
    "goose": "geese",
    "mouse": "mice",
    "ox": "oxen",
    "sheep": "sheep",
    "fish": "fish fishes",
    "deer": "deer",
    "knife": "knives",
    "leaf": "leaves",
    "wife": "wives",
    "life": "lives",
    "wolf": "wolves",
    "half": "halves",
    "shelf": "shelves",
    "loaf": "loaves",
    "thief": "thieves",
    "calf": "calves",
}
_IRREGULAR = {k: set(v.split()) for k, v in _IRREGULAR.items() if v}
_VOWELS = set("aeiou")


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
    forms |= _IRREGULAR.get(w, set())
    return forms


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of ``text`` (``"it's"`` stays one word)."""
    return [w.lower() for w in _WORD.findall(as_text(text))]


class ConceptCoverage(_Scorer):
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


class Fluency(_Scorer):
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


# ---------------------------------------------------------------------------------------------
# Length and repetition
# ---------------------------------------------------------------------------------------------


def _length(text: str, unit: str, tokenizer: Any) -> int:
    if unit == "words":
        return len(text.split())
    if unit == "chars":
        return len(text)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class LengthPenalty(_Scorer):
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


class RepetitionPenalty(_Scorer):
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


# ---------------------------------------------------------------------------------------------
# sacrebleu and rouge-score (imported lazily: the `metrics` extra)
# ---------------------------------------------------------------------------------------------


def _require(module: str, extra: str = "metrics") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = {"sacrebleu": "sacrebleu", "rouge_score": "rouge-score"}.get(module, module)
        raise ImportError(
            f"this scorer needs {package}: pip install {package} (or textgym[{extra}])"
        ) from e


class _SacreBleuScorer(_Scorer):
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


class Rouge(_Scorer):
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

        return _best(references, one)


# ---------------------------------------------------------------------------------------------
# Composition
# ---------------------------------------------------------------------------------------------


class WeightedSum(_Scorer):
    """``sum_i weight_i * scorer_i(prompts, completions, references)``.

    Args:
        terms: ``[(scorer, weight), ...]`` or ``{name: (scorer, weight)}``; a scorer alone
            means weight 1.

    ``last_terms`` holds the unweighted scores of the last call (``{name: array}``), handy for
    logging the components of a composite reward.
    """

    def __init__(self, terms: Sequence[Any] | Mapping[str, Any]):
        items = list(terms.items()) if isinstance(terms, Mapping) else list(enumerate(terms))
        self.terms: list[tuple[str, Scorer, float]] = []
        for name, term in items:
            scorer, weight = (term, 1.0) if callable(term) else term
            if not callable(scorer):
                raise TypeError(f"term {name!r}: {scorer!r} is not a scorer")
            label = name if isinstance(name, str) else f"{name}:{type(scorer).__name__}"
            self.terms.append((label, scorer, float(weight)))
        if not self.terms:
            raise ValueError("WeightedSum needs at least one scorer")
        self.last_terms: dict[str, np.ndarray] = {}
        lo = hi = 0.0
        for _, scorer, w in self.terms:
            a, b = getattr(scorer, "reward_range", (-float("inf"), float("inf")))
            lo, hi = lo + min(w * a, w * b), hi + max(w * a, w * b)
        self.reward_range = (lo, hi)

    def __call__(self, prompts, completions, references=None):
        prompts, completions, references = scorer_batch(prompts, completions, references)
        total = np.zeros(len(completions), dtype=np.float64)
        self.last_terms = {}
        for name, scorer, weight in self.terms:
            scores = np.asarray(scorer(prompts, completions, references), dtype=np.float64)
            self.last_terms[name] = scores.astype(np.float32)
            total += weight * scores
        return total.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# LM-based scorers
# ---------------------------------------------------------------------------------------------


class _LMScorer(_Scorer):
    """Holds a causal LM (a name for :func:`textgym.models.load_lm`, loaded on first use, or
    a model object) and its tokenizer, and runs batched no-grad forward passes on
    ``resolve_device(device)`` (CUDA when available)."""

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        device: Any = None,
        dtype: Any = None,
        batch_size: int = 16,
        max_length: int = 512,
    ):
        if batch_size < 1 or max_length < 2:
            raise ValueError("batch_size must be >= 1 and max_length >= 2")
        self.model_name = model if isinstance(model, str) else None
        self._model = None if isinstance(model, str) else model
        self._tokenizer = tokenizer
        self.device, self.dtype = device, dtype
        self.batch_size, self.max_length = batch_size, max_length
        if self._model is not None:
            if tokenizer is None:
                raise ValueError("pass tokenizer= with a model object (or a model name)")
            self._model.eval()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.model_name is not None:  # reloaded by name on first use
            state["_model"] = None
        return state

    def _load(self) -> tuple[Any, Any, Any]:
        import torch

        from textgym.models import load_lm, load_tokenizer, resolve_device

        if self._model is None:
            self._model, tok = load_lm(self.model_name, device=self.device, dtype=self.dtype)
            self._tokenizer = self._tokenizer or tok
        elif isinstance(self._tokenizer, str):
            self._tokenizer = load_tokenizer(self._tokenizer)
        device = next(self._model.parameters()).device
        if self.device is not None and device != resolve_device(self.device):
            self._model.to(resolve_device(self.device))
            device = resolve_device(self.device)
        return self._model, self._tokenizer, torch.device(device)

    def _ids(self, tok: Any, text: str, special: bool) -> list[int]:
        return list(tok(text, add_special_tokens=special)["input_ids"]) if text else []


class LMScore(_LMScorer):
    """How likely a reference LM finds the completion: ``log p_ref(completion | prompt)``.

    Args:
        model: a name for :func:`~textgym.models.load_lm` (default ``"smollm2-135m"``, loaded
            on first use) or a causal LM object (then pass ``tokenizer``).
        reduction: ``"mean_logprob"`` (default: mean per-token log-likelihood, ``<= 0``),
            ``"sum_logprob"``, or ``"perplexity"`` (``exp(-mean_logprob)``, LOWER is better).
        condition_on_prompt: score the completion after the prompt (default) or alone.
        batch_size, max_length: forward passes take ``batch_size`` texts of at most
            ``max_length`` tokens (longer prompts lose their beginning).
        device, dtype: see :func:`~textgym.models.resolve_device` (CUDA when available).

    The prompt is tokenized with the tokenizer's special tokens (BOS), the completion without,
    and the two id lists are concatenated. An empty completion scores as a uniform guess over
    the vocabulary: ``-log V`` (mean/sum) or ``V`` (perplexity). Deterministic (eval mode,
    ``torch.no_grad``).
    """

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        reduction: str = "mean_logprob",
        condition_on_prompt: bool = True,
        batch_size: int = 16,
        max_length: int = 512,
        device: Any = None,
        dtype: Any = None,
    ):
        if reduction not in ("mean_logprob", "sum_logprob", "perplexity"):
            raise ValueError(
                f"reduction must be mean_logprob, sum_logprob or perplexity, got {reduction!r}"
            )
        super().__init__(model, tokenizer, device, dtype, batch_size, max_length)
        self.reduction = reduction
        self.condition_on_prompt = condition_on_prompt
        self.reward_range = (
            (0.0, float("inf")) if reduction == "perplexity" else (-float("inf"), 0.0)
        )

    def token_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str]
    ) -> list[np.ndarray]:
        """Per-token ``log p_ref`` of each completion's tokens (an empty array when empty)."""
        import torch

        model, tok, device = self._load()
        seqs, starts = [], []
        for p, c in zip(prompts, completions):
            context = self._ids(tok, p, True) if self.condition_on_prompt else []
            if not context:
                start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
                context = [int(start_id if start_id is not None else 0)]
            completion = self._ids(tok, c, False)[: self.max_length - 1]
            context = context[-(self.max_length - len(completion)) :]
            seqs.append(context + completion)
            starts.append(len(context))
        out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # less padding
        with torch.no_grad():
            for b in range(0, len(order), self.batch_size):
                idx = [i for i in order[b : b + self.batch_size] if len(seqs[i]) > starts[i]]
                if not idx:
                    continue
                width = max(len(seqs[i]) for i in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                    mask[row, : len(seqs[i])] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                for row, i in enumerate(idx):
                    s, e = starts[i], len(seqs[i])
                    lp = torch.log_softmax(logits[row, s - 1 : e - 1].float(), dim=-1)
                    target = ids[row, s:e].to(lp.device)
                    out[i] = lp.gather(1, target[:, None])[:, 0].cpu().numpy()
        return out

    def __call__(self, prompts, completions, references=None):
        prompts, completions, references = scorer_batch(prompts, completions, references)
        if not completions:
            return np.zeros(0, dtype=np.float32)
        per_token = self.token_logprobs(prompts, completions)
        vocab = self._model.config.vocab_size
        scores = []
        for lp in per_token:
            if lp.size == 0:
                scores.append(float(vocab) if self.reduction == "perplexity" else -np.log(vocab))
            elif self.reduction == "mean_logprob":
                scores.append(float(lp.mean()))
            elif self.reduction == "sum_logprob":
                scores.append(float(lp.sum()))
            else:
                scores.append(float(np.exp(min(-lp.mean(), 80.0))))
        return np.array(scores, dtype=np.float32)


DEFAULT_JUDGE_TEMPLATE = (
    'Review: "{prompt}{completion}"\n'
    "Question: Is the sentiment of this review positive or negative?\n"
    "Answer:"
)


class LMJudge(_LMScorer):
    """Ask a reference LM a question about the text: ``log p(yes-label) - log p(no-label)``.

    The default template and choices make it a sentiment judge: the log-odds of " positive"
    vs " negative" as the next token after ``template.format(prompt=..., completion=...,
    reference=...)``. Each choice is scored by its first token. Scores are real numbers
    (positive = the first choice is more likely); pass ``squash=True`` for ``sigmoid`` of the
    log-odds, i.e. ``p(first) / (p(first) + p(second))`` in [0, 1].

    Args:
        model, tokenizer, device, dtype, batch_size, max_length: as in :class:`LMScore`.
        template: a ``str.format`` template with ``{prompt}``, ``{completion}`` and optionally
            ``{reference}`` (the first reference, or "").
        choices: the (first, second) label strings.
    """

    def __init__(
        self,
        model: Any = "smollm2-135m",
        tokenizer: Any = None,
        template: str = DEFAULT_JUDGE_TEMPLATE,
        choices: tuple[str, str] = (" positive", " negative"),
        squash: bool = False,
        batch_size: int = 16,
        max_length: int = 512,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(model, tokenizer, device, dtype, batch_size, max_length)
        if len(choices) != 2 or not all(choices):
            raise ValueError(f"choices must be two non-empty strings, got {choices!r}")
        self.template, self.choices, self.squash = template, tuple(choices), squash
        self.reward_range = (0.0, 1.0) if squash else (-float("inf"), float("inf"))

    def __call__(self, prompts, completions, references=None):
        import torch

        prompts, completions, references = scorer_batch(prompts, completions, references)
        if not completions:
            return np.zeros(0, dtype=np.float32)
        model, tok, device = self._load()
        first, second = (self._ids(tok, c, False)[0] for c in self.choices)
        if first == second:
            raise ValueError(f"the choices {self.choices} start with the same token")
        seqs = []
        for p, c, r in zip(prompts, completions, references):
            text = self.template.format(prompt=p, completion=c, reference=r[0] if r else "")
            seqs.append(self._ids(tok, text, True)[-self.max_length :])
        scores = np.zeros(len(seqs), dtype=np.float64)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with torch.no_grad():
            for b in range(0, len(seqs), self.batch_size):
                chunk = seqs[b : b + self.batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, s in enumerate(chunk):  # left padding: the next token is at -1
                    ids[row, width - len(s) :] = torch.tensor(s)
                    mask[row, width - len(s) :] = 1
                position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = (
                    model(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        position_ids=position_ids.to(device),
                    )
                    .logits[:, -1]
                    .float()
                )
                lp = torch.log_softmax(logits, dim=-1)
                scores[b : b + len(chunk)] = (lp[:, first] - lp[:, second]).cpu().numpy()
        if self.squash:
            scores = 1.0 / (1.0 + np.exp(-scores))
        return scores.astype(np.float32)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _call_with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
    """``fn()`` in a daemon thread; raises ``TimeoutError`` if it has not returned after
    ``timeout`` seconds (the thread is abandoned: its late result is discarded)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=target, name="textgym-scorer", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError
    if "error" in result:
        raise result["error"]
    return result["value"]


def _as_scores(raw: Any, task_name: str) -> np.ndarray:
    """The scorer's output as float64, or a ScorerError for anything but real numbers."""
    what = f"the scorer of task {task_name!r} returned"
    if getattr(raw, "requires_grad", False):
        raise ScorerError(
            f"{what} a tensor that tracks gradients; return plain numbers: "
            f"scores.detach().cpu().numpy()"
        )
    if hasattr(raw, "detach") and hasattr(raw, "cpu"):  # a torch tensor: no numpy() surprises
        raw = raw.detach().cpu().numpy()
    try:
        arr = np.asarray(raw)
    except Exception as e:
        raise ScorerError(f"{what} {type(raw).__name__}, not an array of numbers: {e}") from e
    if arr.dtype.kind == "O":
        for value in arr.reshape(-1):
            if getattr(value, "requires_grad", False):
                raise ScorerError(f"{what} tensors that track gradients; return plain floats")
            if hasattr(value, "item") and getattr(value, "size", 1) in (1, None):
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ScorerError(
                    f"{what} {type(value).__name__} {value!r:.40}; scores must be real "
                    f"numbers (float), one per completion"
                )
        arr = np.array(
            [getattr(v, "item", lambda v=v: v)() for v in arr.reshape(-1)], dtype=np.float64
        ).reshape(arr.shape)
    elif arr.dtype.kind not in "iuf":
        kind = {"c": "complex", "b": "bool", "U": "str", "S": "bytes"}.get(arr.dtype.kind)
        raise ScorerError(
            f"{what} {kind or arr.dtype} values, not an array of numbers; scores must be real "
            f"numbers (float), one per completion"
        )
    return arr.astype(np.float64, copy=False)


def run_scorer(
    scorer: Scorer,
    task_name: str,
    prompts: Sequence[str],
    completions: Sequence[str],
    references: Sequence[Reference],
    timeout: float | None = None,
) -> np.ndarray:
    """Call ``scorer`` and check its output; returns float32 scores of shape ``(len(prompts),)``.

    With ``timeout`` (seconds) the scorer runs in a worker thread and a call that has not
    returned in time raises :class:`~textgym.errors.ScorerTimeoutError`.

    Raises:
        ScorerError: the scorer raised, or returned the wrong shape, something other than real
            numbers (complex values, tensors that track gradients, strings) or a NaN/inf score.
    """
    n = len(completions)
    try:
        if timeout is None:
            raw = scorer(prompts, completions, references)
        else:
            raw = _call_with_timeout(lambda: scorer(prompts, completions, references), timeout)
    except TimeoutError as e:
        if str(e):  # the scorer's own TimeoutError (a reward server): an ordinary failure
            raise ScorerError(
                f"the scorer of task {task_name!r} raised TimeoutError: {e}; the step changed "
                f"nothing, call it again to retry"
            ) from e
        raise ScorerTimeoutError(
            f"the scorer of task {task_name!r} did not return within scorer_timeout={timeout} s "
            f"(batch of {n}); the step changed nothing: call it again to retry, or raise "
            f"scorer_timeout"
        ) from None
    except Exception as e:
        raise ScorerError(
            f"the scorer of task {task_name!r} raised {type(e).__name__}: {e} "
            f"(first completion of the batch of {n}: {_short(completions[0])!r}); "
            f"fix the scorer so it returns a score for every completion, including empty ones"
        ) from e
    scores64 = _as_scores(raw, task_name)
    if scores64.shape != (n,):
        raise ScorerError(
            f"the scorer of task {task_name!r} returned shape {scores64.shape} for {n} "
            f"completions; it must return one score per completion, shape ({n},)"
        )
    with np.errstate(over="ignore"):
        scores = scores64.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        i = int(bad[0])
        raise ScorerError(
            f"the scorer of task {task_name!r} returned {scores64[i]} for prompt "
            f"{_short(prompts[i])!r} with completion {_short(completions[i])!r}; "
            f"scores must be finite float32 numbers"
        )
    return scores

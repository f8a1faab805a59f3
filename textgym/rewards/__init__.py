"""Reward functions: batched scorers of (prompt, completion, reference) triples.

The package, bottom to top: :mod:`~textgym.rewards.base` (input hygiene, the batch check, the
base class, :class:`WeightedSum`, :func:`run_scorer`), :mod:`~textgym.rewards.text` (heuristic
text scorers), :mod:`~textgym.rewards.metrics` (matching metrics, sacrebleu and rouge-score) and
:mod:`~textgym.rewards.lm` (scorers that run a reference LM). Import the names from here.

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

from textgym.rewards.base import (
    BaseScorer,
    WeightedSum,
    as_references,
    as_text,
    check_batch_lengths,
    max_over_references,
    run_scorer,
    scorer_batch,
)
from textgym.rewards.lm import DEFAULT_JUDGE_TEMPLATE, LMJudge, LMScore
from textgym.rewards.metrics import (
    BLEU,
    TER,
    ChrF,
    ExactMatch,
    NumericMatch,
    PositionAccuracy,
    Rouge,
    TokenF1,
    extract_number,
    normalize_answer,
)
from textgym.rewards.text import (
    ConceptCoverage,
    Fluency,
    LengthPenalty,
    RepetitionPenalty,
    VaderSentiment,
    word_forms,
    words,
)

__all__ = [
    "BLEU",
    "DEFAULT_JUDGE_TEMPLATE",
    "TER",
    "BaseScorer",
    "ChrF",
    "ConceptCoverage",
    "ExactMatch",
    "Fluency",
    "LMJudge",
    "LMScore",
    "LengthPenalty",
    "NumericMatch",
    "PositionAccuracy",
    "RepetitionPenalty",
    "Rouge",
    "TokenF1",
    "VaderSentiment",
    "WeightedSum",
    "as_references",
    "as_text",
    "check_batch_lengths",
    "extract_number",
    "max_over_references",
    "normalize_answer",
    "run_scorer",
    "scorer_batch",
    "word_forms",
    "words",
]

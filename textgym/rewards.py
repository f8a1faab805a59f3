"""Reward functions: batched scorers of (prompt, completion, reference) triples.

Every scorer is a callable ``scorer(prompts, completions, references) -> np.ndarray`` returning
one float32 score per completion. Scorers take whole batches because the vector environment
scores every episode that ended in a step with one call.

:func:`run_scorer` is how the environments call a scorer: it checks the output (shape, finite
values) and turns any failure into a :class:`~textgym.errors.ScorerError` that names the task,
the bad value and the offending text, so a broken reward never passes silently into training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from textgym.errors import ScorerError
from textgym.tasks import Reference, Scorer


class VaderSentiment:
    """VADER compound sentiment of the completion, in [-1, 1] (vaderSentiment).

    Rule-based and fast (about 10k short texts per second on one core), so it is the default
    reward of ``TextGen-v0``. The prompt is not scored: only what the agent wrote counts.
    """

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
            [self._analyzer.polarity_scores(text or "")["compound"] for text in completions],
            dtype=np.float32,
        )


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def run_scorer(
    scorer: Scorer,
    task_name: str,
    prompts: Sequence[str],
    completions: Sequence[str],
    references: Sequence[Reference],
) -> np.ndarray:
    """Call ``scorer`` and check its output; returns float32 scores of shape ``(len(prompts),)``.

    Raises:
        ScorerError: the scorer raised, or returned the wrong shape or a NaN/inf score.
    """
    n = len(completions)
    try:
        raw = scorer(prompts, completions, references)
    except Exception as e:
        raise ScorerError(
            f"the scorer of task {task_name!r} raised {type(e).__name__}: {e} "
            f"(first completion of the batch of {n}: {_short(completions[0])!r}); "
            f"fix the scorer so it returns a score for every completion, including empty ones"
        ) from e
    try:
        scores = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ScorerError(
            f"the scorer of task {task_name!r} returned {type(raw).__name__}, "
            f"which is not an array of numbers: {e}"
        ) from e
    if scores.shape != (n,):
        raise ScorerError(
            f"the scorer of task {task_name!r} returned shape {scores.shape} for {n} completions; "
            f"it must return one score per completion, shape ({n},)"
        )
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        i = int(bad[0])
        raise ScorerError(
            f"the scorer of task {task_name!r} returned {scores[i]} for prompt "
            f"{_short(prompts[i])!r} with completion {_short(completions[i])!r}; "
            f"scores must be finite numbers"
        )
    return scores

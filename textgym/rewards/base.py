"""What every scorer shares: input hygiene, the batch check, the base class, composition, and
:func:`run_scorer`, the checked call the environments make.

* :func:`as_text` / :func:`as_references` / :func:`scorer_batch`: a batch of any completions
  (``None``, bytes, str) and references (``None``, a string, several strings) as text, after
  :func:`check_batch_lengths`, the one batch-length check.
* :class:`BaseScorer`: implement ``score_one`` (or a batched ``__call__``) and get the rest.
* :class:`WeightedSum`: a weighted sum of scorers that keeps the last value of each term.
* :func:`run_scorer`: calls a scorer (optionally with a timeout) and turns any failure, wrong
  shape or non-finite score into a :class:`~textgym.errors.ScorerError` naming the task and text.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

import numpy as np

from textgym.errors import ScorerError, ScorerTimeoutError
from textgym.retry import call_with_timeout
from textgym.tasks import Reference, Scorer

# -- input hygiene -----------------------------------------------------------------------------


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


def check_batch_lengths(completions: Sized, **others: Sized | None) -> int:
    """``len(completions)``, after checking that each of ``others`` (``None``: not given) has as
    many items; the one batch-length check of every scorer (and of the reward model)."""
    n = len(completions)
    given = {name: len(seq) for name, seq in others.items() if seq is not None}
    if any(size != n for size in given.values()):
        got = ", ".join(f"{size} {name}" for name, size in given.items())
        raise ValueError(
            f"a scorer batch needs as many {' and '.join(given)} as completions: got "
            f"{n} completions, {got}"
        )
    return n


def scorer_batch(
    prompts: Sequence[Any] | None,
    completions: Sequence[Any],
    references: Sequence[Any] | None,
) -> tuple[list[str], list[str], list[tuple[str, ...]]]:
    """A scorer call's batch as text (references as tuples of strings), after
    :func:`check_batch_lengths`; every scorer starts with it."""
    if isinstance(completions, (str, bytes)):
        raise TypeError("completions must be a sequence of strings (a batch), not one string")
    completions = [as_text(c) for c in completions]
    prompts = None if prompts is None else [as_text(p) for p in prompts]
    references = None if references is None else [as_references(r) for r in references]
    n = check_batch_lengths(completions, prompts=prompts, references=references)
    return (
        [""] * n if prompts is None else prompts,
        completions,
        [()] * n if references is None else references,
    )


class BaseScorer:
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


def max_over_references(
    references: tuple[str, ...], score: Callable[[str], float], empty: float = 0.0
) -> float:
    """Max over references (multi-reference scoring); ``empty`` when there is none."""
    return max((score(r) for r in references), default=empty)


# -- composition -------------------------------------------------------------------------------


class WeightedSum(BaseScorer):
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


# -- the checked call --------------------------------------------------------------------------


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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
    what = f"the scorer of task {task_name!r}"
    try:
        raw = call_with_timeout(lambda: scorer(prompts, completions, references), timeout, what)
    except ScorerTimeoutError as e:
        raise ScorerTimeoutError(
            f"{e} (batch of {n}); the step changed nothing: call it again to retry, or raise "
            f"the timeout"
        ) from None
    except TimeoutError as e:  # the scorer's own (a reward server's): an ordinary failure
        raise ScorerError(
            f"{what} raised TimeoutError: {e}; the step changed nothing, call it again to retry"
        ) from e
    except Exception as e:
        raise ScorerError(
            f"{what} raised {type(e).__name__}: {e} "
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

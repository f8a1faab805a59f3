"""Retrying the calls an environment makes to the world: scorers, dialogue partners, tools.

Scorers call LM judges, reward models, people and sandboxes; partners and tools may sit behind
a network. One failing call should not end a long training run, so every environment takes

* ``retry``: a :class:`RetryPolicy` (or a dict of its fields): how often a call that raises or
  takes longer than ``timeout`` seconds is made again, and how long to wait before each retry;
* ``on_failure``: what a call that still fails after its retries does. ``"raise"`` (the
  default): ``step`` raises and leaves the environment as it was, so the caller may retry the
  step. ``"end_episode"``: the episodes that needed the call end (truncated) with
  ``info["failed"] = True`` and ``info["failure"] = "<error class>: <message>"``; their reward
  of 0.0 is a placeholder, not a score, and a learner must leave those episodes out.

:func:`call_with_retries` makes one call under a policy, :func:`call_each` makes a batched call
(all finished episodes of a vector step at once) and, when it still fails, calls again for each
item alone so that one bad item fails only its own episode. Both count what they see in a
:class:`FaultCounts` (``env.fault_counts``).

A call that times out runs in a worker thread that is abandoned, not stopped: Python cannot
kill a thread. Its late result is discarded, but it keeps running (and holding what it holds)
until it returns; a retry runs beside it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import threading
import time
from collections.abc import Callable
from typing import Any

from textgym.errors import InvalidArgumentError, ScorerError, ScorerTimeoutError

ON_FAILURE = ("raise", "end_episode")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How an environment retries a scorer, partner or tool call that raises or times out.

    * ``retries``: calls made again after the first one fails (0: no retry).
    * ``backoff``: seconds to wait before the first retry; retry ``k`` (from 0) waits
      ``backoff * backoff_factor ** k``. The delays are fixed (no random jitter), so a seeded
      run stays reproducible.
    * ``backoff_factor``: growth of the wait from one retry to the next (>= 1).
    * ``timeout``: seconds one attempt may take (None: no limit). The call then runs in a
      worker thread; an attempt still running after ``timeout`` counts as failed and is
      abandoned (a thread cannot be killed: it runs on until it returns, its result is
      discarded).

    Every attempt counts: ``RetryPolicy(retries=2, timeout=5)`` may take up to
    ``3 * 5 + 0.5 + 1.0`` seconds before a call fails for good.
    """

    retries: int = 2
    backoff: float = 0.5
    backoff_factor: float = 2.0
    timeout: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise InvalidArgumentError(
                f"RetryPolicy: retries must be an int >= 0, got {self.retries!r:.60}"
            )
        if not 0 <= self.retries <= 100:
            raise InvalidArgumentError(
                f"RetryPolicy: retries must be in [0, 100], got {self.retries}; e.g. retries=2"
            )
        for name, low, high, unit in (
            ("backoff", 0, 3600, "seconds"),
            ("backoff_factor", 1, 100, "(a factor)"),
        ):
            value = getattr(self, name)
            if not _is_number(value) or not low <= value <= high:
                raise InvalidArgumentError(
                    f"RetryPolicy: {name} must be a number in [{low}, {high}] {unit}, got "
                    f"{value!r:.60}"
                )
            object.__setattr__(self, name, float(value))
        if self.timeout is not None:
            if not _is_number(self.timeout) or not 0 < self.timeout <= 86400:
                raise InvalidArgumentError(
                    f"RetryPolicy: timeout must be None or a number of seconds in (0, 86400], "
                    f"got {self.timeout!r:.60}"
                )
            object.__setattr__(self, "timeout", float(self.timeout))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry ``retry`` (0 for the first)."""
        return self.backoff * self.backoff_factor**retry

    @classmethod
    def coerce(cls, value: Any, name: str = "retry") -> RetryPolicy:
        """``value`` as a policy: a :class:`RetryPolicy`, a dict of its fields (what a JSON env
        spec holds) or None (no retry, no timeout)."""
        if value is None:
            return NO_RETRY
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
            if unknown:
                raise InvalidArgumentError(
                    f"{name}: unknown RetryPolicy field(s) {unknown}; the fields are retries, "
                    f"backoff, backoff_factor and timeout"
                )
            return cls(**value)
        raise InvalidArgumentError(
            f"{name} must be a textgym.RetryPolicy, a dict of its fields or None, got "
            f"{type(value).__name__} {value!r:.60}; pass e.g. {name}=RetryPolicy(retries=2)"
        )


NO_RETRY = RetryPolicy(retries=0, backoff=0.0)


def check_on_failure(value: Any) -> str:
    """``on_failure`` checked: one of :data:`ON_FAILURE`."""
    if not isinstance(value, str) or value not in ON_FAILURE:
        raise InvalidArgumentError(
            f"on_failure must be one of {list(ON_FAILURE)}, got {value!r:.60}; 'end_episode' "
            f"ends the episodes of a call that still fails after its retries as failed"
        )
    return value


@dataclasses.dataclass
class FaultCounts:
    """What an environment's calls went through since it was made (``env.fault_counts``, a
    copy; subtract two copies for the counts of an iteration).

    * ``retries``: calls made again after an attempt failed or timed out.
    * ``timeouts``: attempts abandoned after the policy's ``timeout``.
    * ``failed_calls``: calls that still failed after their retries (each item of a batch
      that was called alone counts as one call).
    * ``failed_episodes``: episodes that ended as failed (``on_failure="end_episode"``).

    Every failed attempt is either retried or the end of a failed call, so the attempts that
    raised or timed out number ``retries + failed_calls``.
    """

    retries: int = 0
    timeouts: int = 0
    failed_calls: int = 0
    failed_episodes: int = 0

    def __sub__(self, other: FaultCounts) -> FaultCounts:
        return FaultCounts(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in _COUNT_FIELDS}
        )

    def copy(self) -> FaultCounts:
        return dataclasses.replace(self)


_COUNT_FIELDS = dataclasses.fields(FaultCounts)


def call_with_retries(
    call: Callable[[], Any], policy: RetryPolicy, counts: FaultCounts, what: str
) -> Any:
    """``call()`` under ``policy``: an attempt that raises an ``Exception`` or runs past
    ``policy.timeout`` is retried after :meth:`RetryPolicy.delay`; the last failure is raised
    (a timeout as :class:`~textgym.errors.ScorerTimeoutError` naming ``what``)."""
    for attempt in range(policy.retries + 1):
        if attempt:
            counts.retries += 1
            time.sleep(policy.delay(attempt - 1))
        try:
            return call_with_timeout(call, policy.timeout, what)
        except ScorerTimeoutError as e:
            counts.timeouts += 1
            error: Exception = e
        except Exception as e:
            error = e
    counts.failed_calls += 1
    raise error


def call_each(
    call: Callable[[list[int]], list[Any]],
    n: int,
    policy: RetryPolicy,
    on_failure: str,
    counts: FaultCounts,
    what: str,
) -> tuple[list[Any], list[str | None]]:
    """``call(items)`` for items ``0..n-1`` at once (it returns one result per item), under
    ``policy``: ``(results, failures)``.

    With ``on_failure="raise"`` a call that still fails raises. With ``"end_episode"`` each
    item is then called alone, one attempt each (the batch had the retries): an item whose own
    call fails gets result None and ``failures[k] = "<error class>: <message>"``, the others
    their result. So one completion that breaks the scorer fails its own episode only."""
    try:
        return call_with_retries(lambda: call(list(range(n))), policy, counts, what), [None] * n
    except Exception as e:
        if on_failure == "raise":
            raise
        if n == 1:
            return [None], [describe_failure(e)]
    alone = dataclasses.replace(policy, retries=0)
    results: list[Any] = [None] * n
    failures: list[str | None] = [None] * n
    for k in range(n):
        try:
            results[k] = call_with_retries(lambda k=k: call([k]), alone, counts, what)[0]
        except Exception as e:
            failures[k] = describe_failure(e)
    return results, failures


def describe_failure(error: BaseException) -> str:
    """``"<error class>: <message>"`` of what failed: the original exception a textgym error
    wraps (a scorer's own ``ConnectionError``), else the error itself (a timeout, NaN scores)."""
    cause = error.__cause__ if isinstance(error, ScorerError) and error.__cause__ else error
    return f"{type(cause).__name__}: {cause}"[:500]


def call_with_timeout(call: Callable[[], Any], timeout: float | None, what: str) -> Any:
    """``call()``; with ``timeout``, in a daemon thread, raising
    :class:`~textgym.errors.ScorerTimeoutError` if it has not returned after ``timeout``
    seconds (the thread is abandoned: its late result is discarded)."""
    if timeout is None:
        return call()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as e:  # handed to the caller below
            result["error"] = e

    thread = threading.Thread(target=target, name="textgym-call", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ScorerTimeoutError(f"{what} did not return within the timeout of {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


__all__ = [
    "ON_FAILURE",
    "FaultCounts",
    "RetryPolicy",
    "call_each",
    "call_with_retries",
    "call_with_timeout",
    "check_on_failure",
    "describe_failure",
]

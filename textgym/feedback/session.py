"""What the terminal and the web page share: a batch of items to rate and input validation.

A :class:`Batch` holds the items of one screen (completions to rate, or pairs to compare), the
answers given so far and the last error per item. Front ends call :meth:`Batch.submit` with the
raw text a person typed; it validates, stores and reports (``on_answer``, which writes the log)
every valid answer at once, so partial work is never lost. The scorer waits on the batch until
it is complete, closed or past its deadline.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RATING = "rating"
PAIR = "pair"
CHOICES = ("a", "b", "tie")
_CHOICE_ALIASES = {
    "a": "a",
    "b": "b",
    "t": "tie",
    "tie": "tie",
    "=": "tie",
    "a better": "a",
    "b better": "b",
}


class RatingScale:
    """A closed rating range ``[low, high]``; ``integer``: only whole numbers are accepted.

    ``integer=None`` means whole numbers when both ends are ints (``(1, 5)``), any number in the
    range otherwise (``(0.0, 1.0)``).
    """

    def __init__(self, low: float, high: float, integer: bool | None = None):
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"scale must be (low, high) with finite low < high, got {(low, high)}")
        if integer is None:
            integer = isinstance(low, int) and isinstance(high, int)
        if integer and (low != int(low) or high != int(high)):
            raise ValueError(f"an integer scale needs whole-number ends, got {(low, high)}")
        self.low, self.high, self.integer = low, high, bool(integer)

    def __repr__(self) -> str:
        return f"RatingScale({self.low}, {self.high}, integer={self.integer})"

    def as_list(self) -> list[float]:
        return [self.low, self.high]

    def describe(self) -> str:
        what = "a whole number" if self.integer else "a number"
        return f"{what} from {_fmt(self.low)} to {_fmt(self.high)}"

    def parse(self, text: Any) -> tuple[float | None, str | None]:
        """``(rating, None)`` for valid input, ``(None, message)`` otherwise."""
        raw = "" if text is None else str(text).strip()
        if not raw:
            return None, f"no rating given: enter {self.describe()}"
        try:
            value = float(raw)
        except ValueError:
            return None, f"{raw!r} is not a number: enter {self.describe()}"
        if not math.isfinite(value):
            return None, f"{raw!r} is not a finite number: enter {self.describe()}"
        if self.integer and value != int(value):
            return None, f"{raw!r} is not a whole number: enter {self.describe()}"
        if not self.low <= value <= self.high:
            return None, f"{raw} is out of range: enter {self.describe()}"
        return (int(value) if self.integer else value), None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_choice(text: Any) -> tuple[str | None, str | None]:
    """A pairwise answer: ``"a"``, ``"b"`` or ``"tie"`` (also ``t``, ``=``), case-insensitive."""
    raw = "" if text is None else str(text).strip()
    if not raw:
        return None, "no choice given: choose A, B or tie"
    choice = _CHOICE_ALIASES.get(raw.lower())
    if choice is None:
        return None, f"{raw!r} is not a choice: choose A, B or tie (a / b / t)"
    return choice, None


@dataclass(frozen=True)
class Item:
    """One thing to judge: a completion to rate, or (``completion_b`` set) a pair to compare."""

    prompt: str
    completion: str
    reference: Any = None
    completion_b: str | None = None


class Batch:
    """The items of one screen and the answers given so far (thread-safe).

    Args:
        kind: ``"rating"`` or ``"pair"``.
        items: what to show, in order.
        parse: ``parse(text) -> (value, None) | (None, message)``.
        on_answer: called as ``on_answer(index, value)`` for every valid answer, before
            :meth:`submit` returns (this is where the scorer logs it).
        batch_id: shown in the page's form, so a stale page cannot answer a newer batch.
        scale: the rating scale (for display); ``None`` for pairs.
    """

    def __init__(
        self,
        kind: str,
        items: list[Item],
        parse: Callable[[Any], tuple[Any, str | None]],
        on_answer: Callable[[int, Any], None],
        batch_id: str,
        scale: RatingScale | None = None,
    ):
        self.kind = kind
        self.items = items
        self.parse = parse
        self.on_answer = on_answer
        self.batch_id = batch_id
        self.scale = scale
        self.answers: dict[int, Any] = {}
        self.raw: dict[int, str] = {}
        self.errors: dict[int, str] = {}
        self.closed_reason: str | None = None  # "complete", "timeout", "input closed"
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def remaining(self) -> list[int]:
        return [i for i in range(len(self.items)) if i not in self.answers]

    @property
    def complete(self) -> bool:
        return len(self.answers) == len(self.items)

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def submit(self, index: int, text: Any) -> str | None:
        """Validate and store one answer; returns the error message, or ``None`` if it was valid."""
        return self.submit_many({index: text}).get(index)

    def submit_many(self, texts: Mapping[int, Any]) -> dict[int, str]:
        """Validate and store several answers; returns ``{index: message}`` for the invalid ones.

        Valid answers are kept (and logged) even when others are invalid. A closed batch accepts
        nothing: every index gets a message saying why.
        """
        errors: dict[int, str] = {}
        with self._cond:
            if self.closed:
                why = {"complete": "was already completed"}.get(
                    self.closed_reason or "", f"was closed ({self.closed_reason})"
                )
                return {int(i): f"this batch {why}; nothing was saved" for i in texts}
            for i, text in texts.items():
                i = int(i)
                if not 0 <= i < len(self.items):
                    errors[i] = f"there is no item {i + 1} in this batch of {len(self.items)}"
                    continue
                self.raw[i] = "" if text is None else str(text)
                value, error = self.parse(text)
                if error is not None:
                    errors[i] = self.errors[i] = error
                    continue
                if i not in self.answers or self.answers[i] != value:  # resubmits: log once
                    self.on_answer(i, value)
                    self.answers[i] = value
                self.errors.pop(i, None)
            if self.complete:
                self.closed_reason = "complete"
            self._cond.notify_all()
        return errors

    def close(self, reason: str) -> None:
        with self._cond:
            if self.closed_reason is None:
                self.closed_reason = reason
            self._cond.notify_all()

    def wait(self, deadline: float | None) -> bool:
        """Block until the batch is closed or ``deadline`` (``time.monotonic()``) passes.

        Returns whether it is complete. Closes the batch with reason ``"timeout"`` on the deadline.
        """
        with self._cond:
            while not self.closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.closed_reason = "timeout"
                    break
                self._cond.wait(timeout=left)
            return self.complete

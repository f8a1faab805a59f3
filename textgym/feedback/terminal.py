"""The terminal front end: print one screen with the whole batch, then ask for each answer.

Input comes from any text stream (``sys.stdin`` by default), read by a background thread so that
a deadline can interrupt the wait; a closed stream (EOF) ends the batch like a timeout does.
"""

from __future__ import annotations

import queue
import sys
import textwrap
import threading
import time
from typing import IO

from textgym.feedback.session import PAIR, Batch

_EOF = object()
_TIMEOUT = object()


class _LineReader:
    """Reads lines of ``stream`` in a daemon thread into a queue, so reads can time out."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lines: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._eof = False

    def _run(self) -> None:
        while True:
            try:
                line = self.stream.readline()
            except (OSError, ValueError):  # stream closed under us
                line = ""
            if not line:
                self.lines.put(_EOF)
                return
            self.lines.put(line)

    def readline(self, deadline: float | None) -> object:
        """The next line (without its newline), ``_EOF`` or ``_TIMEOUT``."""
        if self._eof:
            return _EOF
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="textgym-rating-input", daemon=True
            )
            self._thread.start()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return _TIMEOUT
        if line is _EOF:
            self._eof = True
            return _EOF
        return line.rstrip("\r\n")

    def discard_pending(self) -> int:
        """Drop lines typed while nobody was asking (after a timeout); returns how many."""
        n = 0
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return n
            if line is _EOF:
                self._eof = True
                return n
            n += 1


def _indent(label: str, text: str, width: int = 12) -> str:
    pad = " " * (6 + width)
    body = textwrap.indent(text if text else "(empty)", pad).lstrip(" ")
    return f"      {label:<{width}}{body}"


class TerminalInterface:
    """Shows a batch in a text terminal and reads one answer per line.

    Args:
        input: the stream answers are read from (default ``sys.stdin``).
        output: where the screen is written (default ``sys.stdout``).
    """

    def __init__(self, input: IO[str] | None = None, output: IO[str] | None = None):
        self._reader = _LineReader(input if input is not None else sys.stdin)
        self.output = output
        self._timed_out_before = False

    @property
    def out(self) -> IO[str]:
        return self.output if self.output is not None else sys.stdout

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, batch: Batch) -> None:
        n = len(batch)
        if batch.kind == PAIR:
            title = f"Compare {n} pair(s): which completion is better, A or B (or a tie)?"
        else:
            title = f"Rate {n} completion(s): {batch.scale.describe()}, higher is better"
        self.print("=" * 78)
        self.print(title)
        self.print("=" * 78)
        for i, item in enumerate(batch.items):
            self.print(f"[{i + 1}/{n}]")
            self.print(_indent("prompt:", item.prompt))
            if item.reference is not None:
                ref = (
                    item.reference
                    if isinstance(item.reference, str)
                    else " | ".join(item.reference)
                )
                self.print(_indent("reference:", ref))
            if batch.kind == PAIR:
                self.print(_indent("A:", item.completion))
                self.print(_indent("B:", item.completion_b or ""))
            else:
                self.print(_indent("completion:", item.completion))
        self.print("-" * 78)

    def collect(self, batch: Batch, deadline: float | None) -> None:
        """Ask for every unanswered item until the batch is complete, the deadline or EOF."""
        if self._timed_out_before:
            dropped = self._reader.discard_pending()
            if dropped:
                self.print(f"(ignored {dropped} line(s) typed after the last timeout)")
            self._timed_out_before = False
        self.show(batch)
        n = len(batch)
        for i in batch.remaining:
            if batch.kind == PAIR:
                question = f"which is better for [{i + 1}/{n}]? a / b / t(ie): "
            else:
                question = f"rating for [{i + 1}/{n}] ({batch.scale.describe()}): "
            while i not in batch.answers and not batch.closed:
                self.out.write(question)
                self.out.flush()
                line = self._reader.readline(deadline)
                if line is _TIMEOUT:
                    batch.close("timeout")
                    self._timed_out_before = True
                    self.print("\n(time is up)")
                    return
                if line is _EOF:
                    batch.close("input closed")
                    self.print("\n(input closed)")
                    return
                error = batch.submit(i, line)
                if error is not None:
                    self.print(f"  invalid: {error}. Try again.")
        if batch.complete:
            self.print(f"(saved {n} answer(s))")

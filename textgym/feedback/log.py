"""Append-only JSONL logs of human feedback that survive a killed process.

Every record is written with one ``write`` of one line, then flushed and ``fsync``-ed before the
call returns, so a rating that was acknowledged on screen is on disk even if the process is
killed (``SIGKILL``) the next moment. Readers (``iter(log)``, or
``textgym.tasks.read_jsonl(path, skip_bad_lines=True)``) skip a torn last line (a machine crash in
the middle of a write) with a warning instead of failing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from textgym.tasks import read_jsonl


def now_record() -> dict[str, Any]:
    """``{"time": ISO-8601 UTC, "unix": seconds}`` for a new record."""
    t = time.time()
    iso = _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return {"time": iso, "unix": round(t, 3)}


class JsonlLog:
    """An append-only JSONL file; ``append`` returns once the line is on disk (flush + fsync).

    Safe to call from several threads (a lock serialises the writes). The parent folder is
    created on first write.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JsonlLog({str(self.path)!r})"

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(dict(record), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                data = line.encode("utf-8")
                while data:  # one write in practice; loop for the rare short write
                    written = os.write(fd, data)
                    data = data[written:]
                os.fsync(fd)
            finally:
                os.close(fd)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(read_jsonl(self.path, missing_ok=True, skip_bad_lines=True))

"""Append-only JSONL logs of human feedback that survive a killed process.

Every record is written with one ``write`` of one line, then flushed and ``fsync``-ed before the
call returns, so a rating that was acknowledged on screen is on disk even if the process is
killed (``SIGKILL``) the next moment. Readers skip a torn last line (a machine crash in the middle
of a write) with a warning instead of failing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


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
        return iter(read_jsonl(self.path, missing_ok=True))


def read_jsonl(path: str | os.PathLike, missing_ok: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, in order.

    Blank lines are ignored. A line that is not valid JSON (a write torn by a crash) is skipped
    with a warning naming the file and line. ``missing_ok``: a missing file reads as empty.
    """
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return []
        raise FileNotFoundError(f"JSONL file {str(path)!r} does not exist")
    rows = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                warnings.warn(
                    f"{path}:{line_no}: skipping a line that is not valid JSON ({e.msg}); "
                    f"probably a write cut short by a crash",
                    stacklevel=2,
                )
                continue
            if not isinstance(row, dict):
                warnings.warn(
                    f"{path}:{line_no}: skipping a line that is not an object", stacklevel=2
                )
                continue
            rows.append(row)
    return rows

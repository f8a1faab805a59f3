"""Logger: where a learner's per-iteration rows go.

Three sinks, each optional: ``progress.csv`` in the log folder (one row per iteration, appended on
resume under the header already there), TensorBoard scalars in the same folder (needs
``tensorboard``), and a tqdm progress bar showing reward, KL and tokens/s.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path


class Logger:
    """Writes each row to the CSV file, TensorBoard and the progress bar that are switched on.

    Args:
        log_dir: the folder of ``progress.csv`` and the TensorBoard events (None: neither).
        tensorboard: also write TensorBoard scalars into ``log_dir``.
        progress: show a tqdm bar of ``total`` iterations, starting at ``initial``, named
            ``desc``.
    """

    def __init__(
        self,
        log_dir: str | None,
        *,
        tensorboard: bool,
        progress: bool,
        total: int,
        initial: int = 0,
        desc: str = "",
    ):
        self.csv_path = None
        self.writer = None
        self.bar = None
        self._fields: list[str] | None = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it")
        if log_dir is None:
            return
        path = Path(log_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.csv_path = path / "progress.csv"
        if self.csv_path.exists():
            with self.csv_path.open() as f:
                self._fields = next(csv.reader(f), None)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: optional dependency

            self.writer = SummaryWriter(str(path))

    def log(self, row: dict[str, float]) -> None:
        """One iteration's row (``iteration`` is TensorBoard's step)."""
        if self.csv_path is not None:
            new = self._fields is None
            if new:
                self._fields = list(row)
            with self.csv_path.open("a", newline="") as f:
                writer = csv.DictWriter(f, self._fields, extrasaction="ignore", restval="")
                if new:
                    writer.writeheader()
                writer.writerow(row)
        if self.writer is not None:
            step = int(row["iteration"])
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        if self.bar is not None:
            self.bar.update(1)
            failed = row.get("failed_episodes", 0)  # episodes left out of the update
            self.bar.set_postfix(
                reward=f"{row['reward']:.3f}",
                kl=f"{row['kl']:.3f}",
                tok_s=f"{row['tokens_per_s']:.0f}",
                **({"failed": f"{failed:.0f}"} if failed else {}),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

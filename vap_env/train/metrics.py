"""The metrics rows of a training run: ``metrics.csv``, and TensorBoard when asked for.

One API for every trainer: :class:`MetricsLog` writes a row per logged step (its columns fixed by the
trainer), a resumed run keeps the rows up to its checkpoint and drops the later ones, and ``elapsed_s``
counts the training time of the whole run across resumes; :func:`read_metrics` reads the rows back.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vap_env.train.harness import METRICS_FILE

if TYPE_CHECKING:
    from accelerate import Accelerator


class MetricsLog:
    """The rows of ``metrics.csv`` (written by the main process), mirrored to TensorBoard if asked for.

    Args:
        accelerator: The run's accelerator (created with ``tensorboard=True`` for TensorBoard).
        path: The CSV file.
        fields: Its columns, ``step`` first and ``elapsed_s`` last; a row may leave any of them empty.
        start_step: The step the run starts (or resumes) at: rows after it are dropped.
        tensorboard: ``(project name, config)`` to start the accelerator's TensorBoard tracker with (the
            config's numbers, strings and booleans become its hyper-parameters); ``None`` for none.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        path: Path,
        fields: Sequence[str],
        start_step: int,
        tensorboard: tuple[str, object] | None = None,
    ) -> None:
        self.accelerator, self.path, self.fields = accelerator, Path(path), tuple(fields)
        self.tensorboard = tensorboard is not None
        trained_seconds = 0.0
        if accelerator.is_main_process:
            trained_seconds = self._start(start_step)
        # seconds trained before a resume, so that ``elapsed_s`` counts the whole run
        self.begin = time.perf_counter() - trained_seconds
        if tensorboard is not None:
            name, config = tensorboard
            values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
            hparams = {k: v for k, v in values.items() if isinstance(v, int | float | str | bool)}
            accelerator.init_trackers(name, config=hparams)

    def _start(self, start_step: int) -> float:
        """Starts the file, or on resume keeps the rows up to ``start_step``; returns their last ``elapsed_s``."""
        rows = []
        if start_step > 0 and self.path.exists():
            with self.path.open(newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)
        return float(rows[-1]["elapsed_s"]) if rows and rows[-1].get("elapsed_s") else 0.0

    def elapsed(self) -> float:
        """Training seconds of the whole run so far (those before a resume included)."""
        return time.perf_counter() - self.begin

    def write(self, step: int, values: dict[str, float]) -> None:
        """Appends the row of ``step`` (main process) and logs ``values`` to TensorBoard (if on)."""
        if self.accelerator.is_main_process:
            row = {"step": step, **values, "elapsed_s": self.elapsed()}
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        if self.tensorboard:
            self.accelerator.log(values, step=step)


def read_metrics(out_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` as floats (missing values are NaN)."""
    with (Path(out_dir) / METRICS_FILE).open(newline="") as f:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(f)]

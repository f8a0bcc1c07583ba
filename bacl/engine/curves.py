"""Training curves for DVC: per-iteration loss terms and learning rate, written with dvclive.

``<output_dir>/dvclive/plots/metrics/train/<name>.tsv`` (columns ``step``, ``<name>``;
the step is the training iteration) is what ``dvc.yaml`` declares as plots. dvclive is
told to stay out of DVC's way: it writes no ``dvc.yaml`` of its own and saves no
experiment, because the pipeline's stage owns both.

They are the run's one training log: only the main process writes them, and a resumed
run drops the rows of the epoch it repeats.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)

CURVES_DIR = "dvclive"
PREFIX = "train/"


def truncate_curves(directory: Path, *, before_step: int) -> None:
    """Drop rows at ``step >= before_step`` from every curve under ``directory``: a resumed
    run re-logs the iterations of the epoch that was interrupted."""
    for tsv in sorted((directory / "plots" / "metrics").rglob("*.tsv")):
        with open(tsv, newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        if not rows:
            continue
        step = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[step]) < before_step]
        with open(tsv, "w", newline="") as handle:
            csv.writer(handle, delimiter="\t", lineterminator="\n").writerows(kept)


class TrainingCurves:
    """dvclive's ``Live`` for one run, with the step pinned to the training iteration.

    Args:
        directory: where dvclive writes (``<output_dir>/dvclive``).
        start_iteration: the first iteration this process will log; ``0`` starts the curves
            afresh (an existing directory is cleared), anything else continues them and
            drops rows the resumed run will log again.
    """

    def __init__(self, directory: str | Path, *, start_iteration: int = 0) -> None:
        self.directory = Path(directory)
        from dvclive import Live

        resume = start_iteration > 0 and self.directory.exists()
        if resume:
            truncate_curves(self.directory, before_step=start_iteration)
        elif self.directory.exists():
            shutil.rmtree(self.directory)
        logging.getLogger("dvclive").setLevel(logging.WARNING)
        self._live = Live(str(self.directory), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None)
        self._live.step = start_iteration

    def log(self, iteration: int, values: Mapping[str, float]) -> None:
        """Log ``values`` (e.g. ``{"loss": ..., "loss_cls": ..., "lr": ...}``) at ``iteration``."""
        self._live.step = iteration
        for name, value in values.items():
            self._live.log_metric(PREFIX + name, float(value))

    def close(self) -> None:
        if self._live is not None:
            self._live.end()
            self._live = None

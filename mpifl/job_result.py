"""What a job returns on every rank: the runner's and any model kind's own job runner's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class JobResult:
    theta: np.ndarray
    records: list  # the recorded rounds (progress.RoundRecord, or a kind's own records with as_json)
    summary: dict
    run_dir: Path | None
    trees: object = None  # a tree model's booster (mpifl.trees), which has no parameter vector

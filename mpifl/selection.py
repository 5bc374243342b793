"""The best round and early stopping, judged on a metric the test set has no part in.

Every recorded round is judged on ``stop.metric`` (validation loss by
default).  The run keeps the model of the best round so far, written as
``model_best.npz``, and with ``stop.patience`` it ends once that many
recorded rounds in a row have not improved on the best by more than
``stop.min_delta``.  The test set's metrics cannot be chosen: a figure
selected on the test set is no longer a test figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from mpifl.errors import ConfigError
from mpifl.progress import RoundRecord

# the recorded metrics a run or a sweep may select on, and their direction; the test set's are not among them
SELECTABLE = {"val_loss": "min", "val_accuracy": "max", "val_personal_accuracy": "max", "loss": "min",
              "train_accuracy": "max"}
TEST_METRICS = ("accuracy", "test_loss", "mean_client_accuracy", "final_accuracy", "final_test_loss")
STATE = "best."  # checkpoint keys


def direction(metric: str) -> str:
    return SELECTABLE[metric]


def check_metric(metric: str, where: str) -> None:
    """Refuse a metric that is not recorded, or that the test set computes."""
    if metric in TEST_METRICS:
        raise ConfigError(f"The metric {metric!r} in {where} is computed on the test set; selecting on it would make "
                          f"the test figure a selected one. Choose one of {', '.join(SELECTABLE)}.")
    if metric not in SELECTABLE:
        raise ConfigError(f"The metric {metric!r} in {where} is not a recorded metric a run can select on. Choose "
                          f"one of {', '.join(SELECTABLE)}.")


def improves(value: float, best: float | None, sense: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if sense == "min" else value > best + min_delta


class BestRound:
    """Which recorded round is best on the metric, its model, and whether patience has run out."""

    def __init__(self, metric: str, patience: int, min_delta: float, prune: Callable[[RoundRecord], bool] | None = None):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.sense = direction(metric)
        self.prune = prune  # a sweep's pruner (mpifl.search.TrialPruner): True ends a hopeless trial
        self.value: float | None = None
        self.round: int | None = None
        self.theta: np.ndarray | None = None
        self.waited = 0  # recorded rounds, with a value, since the best
        self.stopped_after: int | None = None
        self.pruned = False

    @classmethod
    def from_config(cls, cfg, prune: Callable[[RoundRecord], bool] | None = None) -> BestRound:
        return cls(cfg.stop.metric, cfg.stop.patience, cfg.stop.min_delta, prune)

    def judge(self, record: RoundRecord, theta: np.ndarray, can_stop: bool = True) -> bool:
        """Take a recorded round and the model it judged; True when the run should end here (only where
        ``can_stop``: not after the last round)."""
        value = getattr(record, self.metric)
        if value is None or not math.isfinite(value):
            return False  # not evaluated this round (no validation rows): patience waits
        if improves(value, self.value, self.sense, self.min_delta):
            self.value, self.round, self.waited = float(value), record.round, 0
            self.theta = theta.copy()
        else:
            self.waited += 1
        if not can_stop:
            return False
        if self.prune is not None and self.prune(record):
            self.pruned = True
        elif not (self.patience and self.waited >= self.patience):
            return False
        self.stopped_after = record.round
        return True

    def state(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps: the best model, and [round, value, waited] (NaN: none yet)."""
        if self.theta is None:
            return {}
        return {f"{STATE}theta": self.theta, f"{STATE}meta": np.array([self.round, self.value, self.waited], float)}

    def load_state(self, state) -> None:
        if f"{STATE}theta" in state:
            self.theta = np.array(state[f"{STATE}theta"])
            meta = state[f"{STATE}meta"]
            self.round, self.value, self.waited = int(meta[0]), float(meta[1]), int(meta[2])

    def summary(self, records: Sequence[RoundRecord]) -> dict:
        """summary.json's best-round entries: the round, the metric, and that round's validation and test figures."""
        best = next((r for r in records if r.round == self.round), None)
        return {
            "best_metric": self.metric,
            "best_round": self.round,
            "best_value": self.value,
            "best_val_loss": best.val_loss if best else None,
            "best_val_accuracy": best.val_accuracy if best else None,
            "best_test_loss": best.test_loss if best else None,
            "best_test_accuracy": best.accuracy if best else None,
            "stopped_early": self.stopped_after is not None,
            "stopped_after_round": self.stopped_after,
            "pruned": self.pruned,  # a sweep's pruner ended the run (mpifl.search)
        }

"""Per-round records and how they are printed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class RoundRecord:
    """Metrics of the global model after a round (round 0 is the initial model).

    loss is the training objective (mean loss plus the L2 term) over all
    training data; accuracy is measured on the held-out test set.  Times are
    those of the round's critical path, the slowest rank's compute included.
    """

    round: int
    loss: float
    accuracy: float | None
    seconds: float
    compute_seconds: float
    comm_seconds: float
    test_loss: float | None = None
    train_accuracy: float | None = None
    client_loss: list[float] | None = None  # federated evaluation, one entry per client
    client_accuracy: list[float] | None = None

    def as_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def line(self) -> str:
        acc = "   n/a" if self.accuracy is None or math.isnan(self.accuracy) else f"{self.accuracy:6.4f}"
        return (
            f"round {self.round:4d}  train loss {self.loss:9.5f}  test acc {acc}  "
            f"{self.seconds * 1e3:8.2f} ms (compute {self.compute_seconds * 1e3:7.2f}, comm {self.comm_seconds * 1e3:7.2f})"
        )


def without_accuracy(record: RoundRecord) -> RoundRecord:
    """For regression models, where accuracy has no meaning."""
    return RoundRecord(**{**asdict(record), "accuracy": None, "train_accuracy": None, "client_accuracy": None})


def is_logged(rnd: int, cfg) -> bool:
    """Rounds whose metrics are recorded: the initial model, every log_every-th, the last."""
    return rnd == 0 or rnd % cfg["log_every"] == 0 or rnd == cfg["rounds"]

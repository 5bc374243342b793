"""Per-round records and how they are printed."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass(frozen=True)
class RoundRecord:
    """Metrics of the global model after a round (round 0 is the initial model).

    loss is the training objective (mean loss plus the L2 term) over all
    training data; accuracy is measured on the held-out test set.  Times are
    those of the round's critical path, the slowest rank's compute included.
    """

    round: int  # 0 is the initial model
    loss: float  # the training objective (mean loss over the training rows, plus the l2 penalty)
    accuracy: float | None  # on the server's (federated) or the ranks' (distributed) test rows
    seconds: float  # the whole round on its critical path
    compute_seconds: float  # the slowest rank's compute, plus the server's aggregation
    comm_seconds: float  # the rest: transfers and waiting for the slowest rank
    test_loss: float | None = None  # mean loss on the test rows
    train_accuracy: float | None = None  # on the training rows
    # federated: the figures of the clients sampled to evaluate (evaluate.fraction), summarised: {"loss", "accuracy"
    # (their training rows), "test_accuracy", "personal_accuracy" (their own test rows): {count, mean,
    # weighted_mean, min, p10, p50, p90, max, jain (accuracies)}}; each client's own: evaluate.per_client
    clients: dict[str, dict[str, float]] | None = None
    evaluated_clients: int | None = None  # federated: clients that reported the global model's training figures
    breakdown: dict[str, list[float]] | None = None  # [min, mean, max] over ranks of compute, comm, wait
    slowest_rank: int | None = None  # the rank that computed longest this round
    mean_client_accuracy: float | None = None  # unweighted mean over the evaluated clients that have own test rows
    personal: dict[str, float] | None = None  # personal accuracy's mean, p10, worst and Jain's index (see docs)
    participants: int | None = None  # clients whose updates were aggregated in this round
    server: dict[str, float] | None = None  # what the strategy reported when aggregating this round
    # Bytes counted at the training collectives.  Federated: what the server broadcast to the client ranks, and
    # what they sent it (updates and statistics).  Distributed: what the ranks' collectives delivered to them
    # (receive buffers) and what the ranks put in (send buffers), summed over ranks.
    downlink_bytes: int | None = None  # this round's bytes to the clients or workers (see above)
    uplink_bytes: int | None = None  # this round's bytes from them
    downlink_bytes_total: int | None = None  # the same, summed over every round so far
    uplink_bytes_total: int | None = None  # the uplink's, summed over every round so far
    uplink_bytes_uncompressed_total: int | None = None  # with [compress]: the uplink total had updates been sent whole
    val_loss: float | None = None  # mean loss on the validation rows (federated: of the clients sampled to evaluate)
    val_accuracy: float | None = None  # on the validation rows, sample-weighted
    val_personal_accuracy: float | None = None  # federated: each sampled client's personal model on its validation rows
    val_clients: int | None = None  # federated: clients that evaluated on their validation rows this round
    val_spread: dict[str, float] | None = None  # federated: the sampled clients' validation accuracy: mean, p10, worst, Jain
    client_rounds: int | None = None  # federated: client updates trained so far (each sampled client's round counts one)
    stages: dict[str, dict] | None = None  # each stage's own fields under its name: privacy's epsilon (at privacy.delta, after the rounds so far), compress's encode_seconds and decode_seconds (the slowest sender's; the decoder's), secagg's seconds per part (slowest rank; docs/how-to/secagg.md)

    def as_json(self) -> dict:
        """A dict for strict JSON: NaN and infinities become null, also inside lists and dicts."""
        return {f.name: _finite(getattr(self, f.name)) for f in fields(self)}  # _finite copies lists and dicts

    def json_line(self) -> str:
        """The record as one line of strict JSON, the same text as ``json.dumps(self.as_json())``.

        The server writes it between a round's updates and the next broadcast,
        while every client waits: as_json's walk over every field and list took
        a seventh of the default job's round (8 ranks, 2 cores).  So the fields
        are dumped as they stand, and only a record that holds a NaN or an
        infinity (a diverging run) takes the walk.
        """
        try:
            return json.dumps(vars(self), allow_nan=False)
        except ValueError:
            return json.dumps(self.as_json(), allow_nan=False)

    def line(self) -> str:
        acc = "   n/a" if self.accuracy is None or math.isnan(self.accuracy) else f"{self.accuracy:6.4f}"
        return (
            f"round {self.round:4d}  train loss {self.loss:9.5f}  test acc {acc}  "
            f"{self.seconds * 1e3:8.2f} ms "
            f"(compute {self.compute_seconds * 1e3:7.2f}, comm {self.comm_seconds * 1e3:7.2f})"
        )


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


class Recorder:
    """Keeps the round records of a run and publishes each as it arrives (files, console)."""

    def __init__(self, publish: Callable[[RoundRecord], RoundRecord]):
        self.records: list[RoundRecord] = []
        self._publish = publish

    def report(self, record: RoundRecord) -> None:
        self.records.append(self._publish(record))


def without_accuracy(record: RoundRecord) -> RoundRecord:
    """For regression models, where accuracy has no meaning."""
    clients = {k: v for k, v in record.clients.items() if k == "loss"} if record.clients else None
    return RoundRecord(**{**asdict(record), "accuracy": None, "train_accuracy": None, "clients": clients or None,
                          "mean_client_accuracy": None, "personal": None, "val_accuracy": None,
                          "val_personal_accuracy": None, "val_spread": None})


def is_logged(rnd: int, cfg) -> bool:
    """Rounds whose metrics are recorded: the initial model, every log_every-th, the last."""
    return rnd == 0 or rnd % cfg.log_every == 0 or rnd == cfg.rounds


def time_breakdown(compute: np.ndarray, comm: np.ndarray) -> tuple[dict[str, list[float]], int]:
    """Split each rank's collective time into waiting for the slowest rank and transfer.

    A rank that computed for c seconds, in a round whose slowest rank computed
    for c_max, spent at most c_max - c of its collective time waiting; the rest
    is transfer.  Returns [min, mean, max] over ranks of each, and the slowest rank.
    """
    wait = np.minimum(comm, compute.max() - compute)
    parts = {"compute": compute, "comm": comm - wait, "wait": wait}
    spread = {name: [float(v.min()), float(v.mean()), float(v.max())] for name, v in parts.items()}
    return spread, int(np.argmax(compute))


def slowest_overall(records: list[RoundRecord]) -> int | None:
    """The rank that was slowest in the most recorded rounds."""
    ranks = [r.slowest_rank for r in records if r.slowest_rank is not None and r.round > 0]
    return Counter(ranks).most_common(1)[0][0] if ranks else None

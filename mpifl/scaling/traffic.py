"""The collectives one training round issues, derived from the job config.

This mirrors mpifl.distributed and mpifl.federated, and feeds the
alpha-beta projection; evaluation on logged rounds is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mpifl.config import Config
from mpifl.data.shards import model_spec

STATS_ROW_BYTES = 7 * 8  # mpifl.federated.STATS float64 values per client
STOP_FLAG_BYTES = 8  # distributed mode's per-round stop agreement


@dataclass(frozen=True)
class Collective:
    name: str  # one of mpifl.scaling.alphabeta.COLLECTIVES
    nbytes: int  # per rank
    count: int  # per round


def train_rows(cfg: Config, ranks: int) -> int:
    """Training rows in the whole job (all workers together) at ``ranks`` ranks."""
    from mpifl.data.shards import resolve

    return resolve(cfg).train_rows(ranks, workers(cfg.mode, ranks))


def workers(mode: str, ranks: int) -> int:
    """Ranks that hold training data: all of them, or all but the server."""
    return ranks - 1 if mode == "federated" else ranks


def per_round(cfg: Config, ranks: int, rows_per_worker: float, model_size: int | None = None) -> list[Collective]:
    """Collectives per round at ``ranks`` ranks; ``model_size`` overrides the job's parameter count."""
    spec = model_spec(cfg)
    size = model_size if model_size is not None else spec.size
    model_bytes = size * spec.dtype.itemsize
    if cfg.mode == "federated":
        clients = workers("federated", ranks)
        return [
            Collective("Bcast", (size + clients + 1) * spec.dtype.itemsize, 1),
            Collective("Gather", model_bytes, 1),
            Collective("Gather", STATS_ROW_BYTES, 1),
        ]
    if cfg.train.algorithm == "local_sgd":
        steps = 1
    elif cfg.train.batch_size == 0:
        steps = cfg.train.epochs
    else:
        steps = cfg.train.epochs * max(1, math.ceil(rows_per_worker / cfg.train.batch_size))
    return [Collective("Allreduce", model_bytes, steps), Collective("Allreduce", STOP_FLAG_BYTES, 1)]

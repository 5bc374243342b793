"""A round's tiny clients trained in one compiled call: cross-device rounds whose cost is the clients' own work.

A client of 20 rows trains in a few microseconds, and a Python call per
client (its trainer, its stream, its batch orders, its update's views) would
cost several times that.  Where a rank's clients do plain local SGD from the
global model (a half with no state, hook or report, no optimizer state kept
between rounds) and its model kind offers a cohort
kernel, the rank packs the round's clients' rows once and the kernel trains
them one after another, drawing each client's batch orders from its own
stream inside the loop (mpifl.kernels.pcg64).  Each client's delta is the
bytes it would have made alone; tests/test_cohort.py checks that.
"""

from __future__ import annotations

import numpy as np

from mpifl.data.client_pool import ClientPool
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings
from mpifl.rng import Purpose, entropy_words
from mpifl.strategies.base import ClientUpdate


def trains_as_cohort(half: ClientUpdate, kept_state: bool, kernels: ModelKernels, settings: LocalSettings) -> bool:
    """Whether a rank's clients can train as one cohort: plain SGD from theta, no state of their own between
    rounds, a model kind with a cohort kernel.  The stages then take each client's update as they would alone."""
    return type(half).trains_plainly() and not kept_state and kernels.trains_cohorts and settings.optimizer == "sgd"


class CohortTraining:
    """Packs a round's clients' training rows and runs the model kind's cohort kernel on them."""

    def __init__(self, kernels: ModelKernels, settings: LocalSettings, seed: int):
        self.kernels, self.settings, self.seed = kernels, settings, seed
        self.deltas = np.empty((0, 0), dtype=kernels.spec.dtype)

    def scratch(self, clients: int, size: int) -> np.ndarray:
        """(clients, size) rows for deltas that a stage takes before they travel; grown, never shrunk."""
        if self.deltas.shape[0] < clients:
            self.deltas = np.empty((max(clients, 2 * self.deltas.shape[0]), size), dtype=self.deltas.dtype)
        return self.deltas[:clients]

    def train(self, pool: ClientPool, ids: np.ndarray, epochs: np.ndarray, rnd: int, theta: np.ndarray,
              deltas: np.ndarray) -> np.ndarray | None:
        """Clients ``ids`` trained ``epochs`` each from theta, their deltas into deltas[i] (flat rows); returns each
        client's row count, or None (nothing trained) where a client's rows are sparse: those train one by one."""
        shards = [pool[int(k)].train for k in ids]
        if any(s.sparse for s in shards):
            return None
        rows = np.fromiter((s.n for s in shards), dtype=np.int64, count=len(shards))
        starts = np.zeros(len(shards) + 1, dtype=np.int64)
        np.cumsum(rows, out=starts[1:])
        X = np.concatenate([s.X for s in shards]) if len(shards) > 1 else shards[0].X
        y = np.concatenate([s.y for s in shards]) if len(shards) > 1 else shards[0].y
        entropy = np.array(entropy_words(self.seed, Purpose.SHUFFLE, rnd), dtype=np.uint64)
        s = self.settings
        self.kernels.train_cohort(X, y, starts, entropy, np.ascontiguousarray(ids, dtype=np.int64),
                                  np.ascontiguousarray(epochs, dtype=np.int64), theta, deltas, s.batch_size, s.lr,
                                  s.momentum, s.l2)
        return rows


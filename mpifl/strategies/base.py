"""The aggregation interface: pure NumPy maths, no transport.

The federated loop gathers client results and calls a strategy; a strategy
never touches the communicator.  New algorithms (FedProx, FedAdam, robust
aggregators) subclass Strategy and override what they change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from mpifl.rng import Purpose, stream


class Strategy(ABC):
    """Chooses the clients of a round and turns their results into a new global model."""

    def __init__(self, fraction: float, seed: int):
        if not 0.0 < fraction <= 1.0:
            raise ValueError("The client fraction must be in (0, 1].")
        self.fraction = fraction
        self.seed = seed

    def sample_clients(self, rnd: int, n_clients: int) -> np.ndarray:
        """Boolean mask of the clients that train in round ``rnd``."""
        count = max(1, int(round(self.fraction * n_clients)))
        mask = np.zeros(n_clients, dtype=bool)
        if count == n_clients:
            mask[:] = True
        else:
            chosen = stream(self.seed, Purpose.CLIENT_SAMPLING, rnd).choice(n_clients, count, replace=False)
            mask[chosen] = True
        return mask

    def state(self) -> dict[str, np.ndarray]:
        """Server-side optimizer state to checkpoint (FedAvg has none)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what state() returned; a stateless strategy has nothing to restore."""
        return None

    @abstractmethod
    def aggregate(self, theta: np.ndarray, updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """New global parameters from the clients' parameters (one row each) and weights."""


def weighted_mean(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of weights[k] * rows[k] over sum of weights, accumulated in float64."""
    return (weights.astype(np.float64) @ rows.astype(np.float64)) / float(weights.sum())

"""FedAvg (McMahan et al. 2017): the sample-weighted mean of the clients' models."""

from __future__ import annotations

import numpy as np

from mpifl.strategies.base import Strategy, weighted_mean


class FedAvg(Strategy):
    def aggregate(self, theta: np.ndarray, updates: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Weighted mean of the updates; a round where nobody trained keeps theta."""
        if weights.sum() <= 0:
            return theta.copy()
        return weighted_mean(updates, weights).astype(theta.dtype).reshape(theta.shape)

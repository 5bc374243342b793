"""FedAvg (McMahan et al. 2017): theta + the sample-weighted mean of the clients' deltas."""

from __future__ import annotations

import numpy as np

from mpifl.strategies.base import RoundResults, Strategy, apply_step, norm


class FedAvg(Strategy):
    name = "fedavg"
    averages_deltas = True

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        step, said = self.combine(results)
        return apply_step(theta, step), {"update_norm": norm(step), **said}

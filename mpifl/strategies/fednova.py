"""FedNova (Wang et al. 2020): normalised averaging, so clients that take more local steps do not dominate.

Client k takes tau_k local steps of SGD with step size eta and momentum rho.
Its delta is tau_k-step progress; FedNova divides it by the norm of the
paper's aggregation vector a_k,

    ||a_k||_1 = tau_k                                          (rho = 0)
    ||a_k||_1 = [tau_k - rho (1 - rho^tau_k) / (1 - rho)] / (1 - rho)   (momentum rho),

and rescales the weighted mean of the normalised deltas by
tau_eff = sum_k p_k ||a_k||_1 with p_k = n_k / sum n:

    theta <- theta + tau_eff * sum_k p_k delta_k / ||a_k||_1.

With equal tau_k this is FedAvg.  Each client declares its tau_k as a float64
uplink field, so the payload stays delta alone.
"""

from __future__ import annotations

import numpy as np

from mpifl.protocol import FLOAT64, Field
from mpifl.strategies.base import ClientUpdate, RoundResults, Strategy, apply_step, norm


def effective_steps(steps, momentum: float):
    """||a_k||_1 of the FedNova paper for ``steps`` SGD steps (a number or an array) with heavy-ball momentum."""
    if momentum == 0.0:
        return steps * 1.0
    rho = momentum
    return (steps - rho * (1.0 - rho**steps) / (1.0 - rho)) / (1.0 - rho)


class StepCountingClient(ClientUpdate):
    def report(self, delta, downlink, state, run, out) -> None:
        out["steps"][0] = run.steps


class FedNova(Strategy):
    name = "fednova"
    uplink = (Field("steps", 1, FLOAT64),)
    client = StepCountingClient

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        a = effective_steps(results.fields["steps"].astype(np.float64), self.setup.local_momentum)
        p = results.weights / results.weights.sum()
        flat = results.deltas.reshape(results.count, -1).astype(np.float64)
        tau_eff = float(p @ a)
        step = (tau_eff * ((p / a) @ flat)).reshape(theta.shape)
        return apply_step(theta, step), {"update_norm": norm(step), "tau_eff": tau_eff}

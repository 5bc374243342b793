"""FedExP (Jhunjhunwala, Wang and Joshi, ICLR 2023): FedAvg with an extrapolated server step size.

A user's strategy, outside the package: a job names it as
``server.strategy = "examples.fedexp:FedExP"`` (run from the repository
root, so that ``examples`` is importable), or a script hands it over with
``mpifl.run(job, strategy=FedExP)``.

Each round's server step is eta_g times the mean delta, with the paper's
adaptive step size (Algorithm 1, pseudo-gradients written as deltas):

    eta_g = max(1, sum_i |delta_i|^2 / (2 M (|mean delta|^2 + epsilon)))

over the round's M clients, averaged with equal weights as in the paper.
Each client reports its |delta_i|^2 as a float64 uplink field (the client
half below), so the server needs no more than the rows it already gets.
"""

from __future__ import annotations

# --8<-- [start:strategy]
import numpy as np

from mpifl.constraints import Interval
from mpifl.protocol import FLOAT64, Field
from mpifl.strategies import ClientUpdate, Strategy
from mpifl.strategies.base import apply_step, norm


class SquaredNormClient(ClientUpdate):
    """Sends |delta|^2 beside delta, computed in float64 on the client's rank."""

    def report(self, delta, downlink, state, run, out) -> None:
        flat = delta.reshape(-1).astype(np.float64)
        out["sqnorm"][0] = flat @ flat


class FedExP(Strategy):
    """Reads each client's row (results.deltas) and so declares neither averages_deltas nor needs_only_sums:
    mpifl keeps rows for it, and refuses the summing exchanges and robust aggregators."""

    parameters = {"epsilon": (1e-3, Interval(float, 0, None, "neither"))}  # server.epsilon
    uplink = (Field("sqnorm", 1, FLOAT64),)
    client = SquaredNormClient

    def aggregate(self, rnd, theta, results):
        rows = results.deltas.reshape(results.count, -1).astype(np.float64)
        mean = rows.mean(axis=0)
        spread = float(results.fields["sqnorm"].sum())
        eta = max(1.0, spread / (2.0 * results.count * (float(mean @ mean) + self.params["epsilon"])))
        step = (eta * mean).reshape(theta.shape)
        return apply_step(theta, step), {"update_norm": norm(step), "server_lr": eta}
# --8<-- [end:strategy]

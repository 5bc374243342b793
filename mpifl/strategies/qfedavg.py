"""q-FedAvg (Li, Sanjabi, Beirami and Smith, ICLR 2020, "Fair resource allocation in federated learning").

The q-FFL objective weighs client k's loss F_k by F_k^q, so the worst-off
clients count more as q grows (q = 0 is FedAvg's objective).  Each sampled
client reports its mean training loss F_k at the global model w before it
trains; with L = 1 / train.lr (the paper's Lipschitz estimate) and the
client's local result w_k,

    Delta w_k = L (w - w_k),   Delta_k = F_k^q Delta w_k,
    h_k = q F_k^(q-1) ||Delta w_k||^2 + L F_k^q,
    w <- w - sum_k Delta_k / sum_k h_k.

(Algorithm 2 of the paper.)  The clients weigh equally, as in the paper.
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Interval
from mpifl.protocol import FLOAT64, Field
from mpifl.strategies.base import ClientUpdate, RoundResults, Strategy, apply_step, norm


class LossReportingClient(ClientUpdate):
    wants_loss = True

    def report(self, delta, downlink, state, run, out) -> None:
        out["start_loss"][0] = run.start_loss


class QFedAvg(Strategy):
    name = "qfedavg"
    parameters = {"q": (1.0, Interval(float, 0, None))}
    uplink = (Field("start_loss", 1, FLOAT64),)
    client = LossReportingClient
    weighs_by_rows = False

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        q = self.params["q"]
        lipschitz = 1.0 / self.setup.local_lr
        losses = np.maximum(results.fields["start_loss"].astype(np.float64).reshape(-1), 1e-10)
        dw = -lipschitz * results.deltas.reshape(results.count, -1).astype(np.float64)  # L (w - w_k)
        weights = losses ** q
        h = q * losses ** (q - 1) * np.einsum("ij,ij->i", dw, dw) + lipschitz * weights
        step = -((weights @ dw) / h.sum()).reshape(theta.shape)
        return apply_step(theta, step), {"update_norm": norm(step), "max_client_loss": float(losses.max())}

"""SCAFFOLD (Karimireddy et al. 2020, Algorithm 1 with option II control variates).

Downlink: theta and the server control c, in one Bcast.  Client k starts
from theta and takes K local steps y <- y - eta (g_k(y) - c_k + c) (the
drift correction c - c_k enters the compiled step through the objective
hook), then computes

    c_k+ = c_k - c + (theta - y) / (K eta)                       (option II)

and sends delta_k = y - theta and delta_c_k = c_k+ - c_k in one payload row;
c_k stays on its rank.  The server, with S the clients that trained and N
all clients:

    theta <- theta + eta_g * mean_{k in S} delta_k,   c <- c + (1/N) sum_{k in S} delta_c_k.

The means are unweighted, as in the paper.  With local momentum rho the
paper's K eta becomes eta * ||a_k||_1 (FedNova's effective step count), which
is K eta again at rho = 0.
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Interval
from mpifl.protocol import Field
from mpifl.strategies.base import ClientUpdate, Hook, RoundResults, Setup, Strategy, apply_step, norm
from mpifl.strategies.fednova import effective_steps


class ControlVariateClient(ClientUpdate):
    state = ("control",)

    def __init__(self, params, shape, dtype):
        super().__init__(params, shape, dtype)
        self._correction = np.zeros(shape, dtype=self.dtype)

    def objective(self, theta, downlink, state) -> Hook | None:
        np.subtract(downlink["control"], state["control"], out=self._correction)
        return theta, 0.0, self._correction

    def report(self, delta, downlink, state, run, out) -> None:
        scale = 1.0 / (run.lr * effective_steps(run.steps, run.momentum))
        change = out["delta_control"]  # c_k+ - c_k = -c - delta / (K eta), in place: no temporaries
        np.multiply(delta, -scale, out=change)
        change -= downlink["control"]
        state["control"] += change


class Scaffold(Strategy):
    name = "scaffold"
    parameters = {"lr": (1.0, Interval(float, 0, None, "neither"))}
    downlink = (Field("control"),)
    uplink = (Field("delta_control"),)
    client = ControlVariateClient
    needs_only_sums = True  # the mean of the deltas and the sum of the control deltas
    weighs_by_rows = False  # the paper's means are unweighted

    def __init__(self, setup: Setup):
        super().__init__(setup)
        self.control = np.zeros(setup.shape)  # float64; sent in the model's dtype

    def downlink_values(self) -> dict[str, np.ndarray]:
        return {"control": self.control}

    def aggregate(self, rnd: int, theta: np.ndarray, results: RoundResults) -> tuple[np.ndarray, dict[str, float]]:
        if results.summed is not None:  # secure aggregation: the sums of the (unweighted) deltas and control deltas
            count = results.summed_weight if results.summed_weight > 0 else 1.0
            step = self.params["lr"] * (results.summed / count).reshape(self.setup.shape)
            change = results.summed_fields["delta_control"].reshape(self.setup.shape)
        else:
            step = self.params["lr"] * results.deltas.mean(axis=0, dtype=np.float64)
            change = results.fields["delta_control"].sum(axis=0, dtype=np.float64)
        self.control += change / self.setup.n_clients
        return apply_step(theta, step), {"update_norm": norm(step), "control_norm": norm(self.control)}

    def state(self) -> dict[str, np.ndarray]:
        return {"control": self.control}

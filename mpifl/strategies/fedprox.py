"""FedProx (Li et al. 2020): each client minimises its loss plus (mu / 2) ||theta - theta_r||^2.

The server aggregates as FedAvg does.  The proximal term enters the compiled
SGD step through the objective hook, so mu = 0 runs FedAvg's code exactly.
Stragglers' partial work is kept (unless server.drop_stragglers is set).
"""

from __future__ import annotations

from mpifl.constraints import Interval
from mpifl.strategies.base import ClientUpdate, Hook
from mpifl.strategies.fedavg import FedAvg


class ProximalClient(ClientUpdate):
    def objective(self, theta, downlink, state) -> Hook | None:
        return theta, float(self.params["proximal_mu"]), None


class FedProx(FedAvg):
    name = "fedprox"
    parameters = {"proximal_mu": (0.01, Interval(float, 0, None))}
    client = ProximalClient

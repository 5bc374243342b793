"""Ditto (Li, Hu, Beirami and Smith, ICML 2021): a personal model per client beside the global one.

The global model is trained and aggregated exactly as FedAvg's.  Each time
client k is sampled it also trains its personal model v_k for the same local
epochs on the same rows, on its loss plus (lambda / 2) ||v_k - theta||^2
(server.personal_lambda), the proximal pull toward the global model that
arrived this round (the compiled SGD step's objective hook).  v_k never
leaves the client's rank: it is client state, checkpointed in the rank's
file, and the client's own test rows judge it (personal accuracy).  v_k
starts from the global model the first time the client is sampled.  As
lambda grows, v_k follows the global model; at 0 it is local training alone.
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Interval
from mpifl.strategies.base import ClientUpdate, Hook
from mpifl.strategies.fedavg import FedAvg


class DittoClient(ClientUpdate):
    state = ("personal",)

    def personal(self, theta, state) -> tuple[np.ndarray, Hook]:
        model = state["personal"]
        if not model.any():  # never trained: start from the global model
            model[...] = theta
        return model, (theta, float(self.params["personal_lambda"]), None)

    def personal_model(self, theta, state) -> np.ndarray | None:
        model = state["personal"]
        return model if model.any() else None


class Ditto(FedAvg):
    name = "ditto"
    parameters = {"personal_lambda": (0.1, Interval(float, 0, None))}
    client = DittoClient

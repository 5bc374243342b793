"""FedPer and FedRep: a shared body, and a personal head that never leaves its client's rank.

The model splits at its output layer: the head is that layer (the last
values of the flat theta, as the model kind declares), the body every layer
below it.  Each client keeps its own head as client state on its rank,
checkpointed there; only the body's part of each update travels, so the
uplink carries (P - head) values a client.  The server averages the bodies
as FedAvg does; its own head is never trained (the server's test accuracy is
that of the shared body under the starting head, and says little: judge
these methods by the clients' personal accuracy, on their own test rows).

- **FedPer** (Arivazhagan et al. 2019, "Federated learning with
  personalization layers"): a client trains body and head together for its
  local epochs, from the global body and its own head.
- **FedRep** (Collins et al. 2021, "Exploiting shared representations for
  personalized federated learning"): a client first trains its head for
  ``server.head_epochs`` epochs with the body frozen, then the body for its
  local epochs with the head frozen (each phase draws its batch orders from
  the round's stream afresh).

A client's head starts as the global model's the first time it trains; its
personal model is the global body of the round with its own head.
"""

from __future__ import annotations

import numpy as np

from mpifl.constraints import Interval
from mpifl.strategies.base import ClientUpdate
from mpifl.strategies.fedavg import FedAvg


class HeadClient(ClientUpdate):
    """Local training from the global body with this client's head; keeps the head, sends the body."""

    state = ("personal",)  # the client's model after its last local training: its own head, and the body it trained
    keeps_head = True

    def start(self, theta, state, model) -> None:
        model[...] = theta
        own = state["personal"]
        if own.any():  # trained before: its own head on the global body
            model.reshape(-1)[self.head] = own.reshape(-1)[self.head]

    def keep(self, model, state) -> None:
        state["personal"][...] = model

    def personal_model(self, theta, state) -> np.ndarray | None:
        own = state["personal"]
        if not own.any():
            return None
        model = theta.copy()
        model.reshape(-1)[self.head] = own.reshape(-1)[self.head]
        return model


class FedRepClient(HeadClient):
    def phases(self, epochs: int) -> tuple[tuple[int, slice | None], ...]:
        body = slice(0, self.head.start)
        return ((int(self.params["head_epochs"]), self.head), (epochs, body))


class FedPer(FedAvg):
    name = "fedper"
    client = HeadClient


class FedRep(FedAvg):
    name = "fedrep"
    parameters = {"head_epochs": (10, Interval(int, 1, None))}  # local epochs on the head before the body's
    client = FedRepClient

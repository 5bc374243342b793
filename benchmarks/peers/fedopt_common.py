"""What the FedProx / FedAdam peers share with mpifl: the same clients, the same batch orders, the paper's server maths.

DATA.npz (written by benchmarks/run.py) holds X_train, y_train, client_ids,
X_test and y_test: mpifl's own fedprox_synthetic clients.  A client's row
orders in round r are drawn epoch after epoch from mpifl's stream
(seed, SHUFFLE, r, k), so
every system takes the same SGD steps (mpifl.local.LocalTrainer.orders).
"""

from __future__ import annotations

import numpy as np

from mpifl.rng import Purpose, stream

SETTINGS = {"batch": 10, "lr": 0.01, "epochs": 20, "mu": 1.0, "eta": 0.03, "beta1": 0.9, "beta2": 0.99, "tau": 1e-3,
            "seed": 0}


def load(path: str):
    data = np.load(path)
    X, y, ids = data["X_train"], data["y_train"].astype(np.int64), data["client_ids"]
    clients = [np.flatnonzero(ids == k) for k in range(int(ids.max()) + 1)]
    return X, y, clients, data["X_test"], data["y_test"].astype(np.int64)


def local_train(W, X, y, rows, rnd, k, mu, sgd_epoch):
    """The client's local epochs in mpifl's row order; returns the trained W."""
    s = SETTINGS
    anchor = W.copy()
    rng = stream(s["seed"], Purpose.SHUFFLE, rnd, k)
    for _ in range(s["epochs"]):
        sgd_epoch(W, X, y, rows[rng.permutation(rows.size)], s["batch"], s["lr"], mu, anchor)
    return W


class PaperFedAdam:
    """Reddi et al. 2021, Algorithm 2: v starts at tau^2, no bias correction (mpifl's maths)."""

    def __init__(self, shape):
        s = SETTINGS
        self.m, self.v = np.zeros(shape), np.full(shape, s["tau"] ** 2)

    def step(self, W, delta):
        s = SETTINGS
        self.m = s["beta1"] * self.m + (1 - s["beta1"]) * delta
        self.v = s["beta2"] * self.v + (1 - s["beta2"]) * delta**2
        return W + s["eta"] * self.m / (np.sqrt(self.v) + s["tau"])


def accuracy(W, Xt, yt) -> float:
    return float(np.mean(np.argmax(Xt @ W[:-1] + W[-1], axis=1) == yt))

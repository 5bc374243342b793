"""The same FedAvg softmax regression in Flower's simulation engine (ServerApp + ClientApp + run_simulation).

    python benchmarks/peers/flower_fedavg.py DATA.npz ROUNDS OUT.json

Each client reads only its own rows; the server evaluates the global model
centrally after every round (which also stamps the round times), and no
client-side evaluation is requested.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from flower_run import simulate_fedavg
from softmax_sgd import sgd_epoch


def main(path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    from flwr.client import NumPyClient
    from flwr.common import Context

    meta = np.load(path)
    n_clients = int(meta["client_ids"].max()) + 1
    classes = int(max(meta["y_train"].max(), meta["y_test"].max()) + 1)
    shape = (meta["X_train"].shape[1] + 1, classes)
    Xt, yt = meta["X_test"], meta["y_test"].astype(np.int64)

    class SoftmaxClient(NumPyClient):
        def __init__(self, k: int):
            data = np.load(path)
            rows = np.flatnonzero(data["client_ids"] == k)
            self.k, self.X, self.y = k, data["X_train"][rows], data["y_train"][rows].astype(np.int64)

        def fit(self, parameters, config):
            rng = np.random.default_rng([int(config["round"]), self.k])
            W = sgd_epoch(parameters[0].copy(), self.X, self.y, rng.permutation(self.y.size))
            return [W], self.y.size, {}

    def client_fn(context: Context):
        return SoftmaxClient(int(context.node_config["partition-id"])).to_client()

    def accuracy(parameters) -> float:
        W = parameters[0]
        return float(np.mean(np.argmax(Xt @ W[:-1] + W[-1], axis=1) == yt))

    simulate_fedavg(client_fn, [np.zeros(shape)], n_clients, rounds, accuracy, t_start, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

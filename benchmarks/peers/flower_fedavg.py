"""The same FedAvg softmax regression in Flower's simulation engine (ServerApp + ClientApp + run_simulation).

    python benchmarks/peers/flower_fedavg.py DATA.npz ROUNDS OUT.json

Each client reads only its own rows; the server evaluates the global model
centrally after every round (which also stamps the round times), and no
client-side evaluation is requested.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from softmax_sgd import sgd_epoch


def main(path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    meta = np.load(path)
    n_clients = int(meta["client_ids"].max()) + 1
    classes = int(max(meta["y_train"].max(), meta["y_test"].max()) + 1)
    shape = (meta["X_train"].shape[1] + 1, classes)
    Xt, yt = meta["X_test"], meta["y_test"].astype(np.int64)
    stamps, accuracy = [], [float("nan")]

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

    def evaluate(rnd, parameters, config):
        W = parameters[0]
        stamps.append(time.perf_counter())
        accuracy[0] = float(np.mean(np.argmax(Xt @ W[:-1] + W[-1], axis=1) == yt))
        return 0.0, {"accuracy": accuracy[0]}

    def server_fn(context: Context):
        strategy = FedAvg(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients, min_available_clients=n_clients,
            evaluate_fn=evaluate, on_fit_config_fn=lambda rnd: {"round": rnd},
            initial_parameters=ndarrays_to_parameters([np.zeros(shape)]),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(ServerApp(server_fn=server_fn), ClientApp(client_fn=client_fn), num_supernodes=n_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    per_round = float(np.median(np.diff(stamps[1:]))) if len(stamps) > 2 else float("nan")  # stamp 0: initial model
    json.dump({"accuracy": accuracy[0], "seconds_per_round": per_round, "rounds_timed": len(stamps) - 1,
               "train_seconds": time.perf_counter() - t_start}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

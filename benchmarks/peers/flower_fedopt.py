"""Flower's FedProx and FedAdam strategies on the same clients (ServerApp + ClientApp + run_simulation).

    python benchmarks/peers/flower_fedopt.py fedprox|fedadam DATA.npz ROUNDS OUT.json

Full participation.  FedProx: Flower sends proximal_mu in the fit config and
the client adds mu (W - W_global) to each gradient, as mpifl's kernel does.
FedAdam: Flower's own server maths (its v starts at 0 and its step carries a
bias correction), with the same eta, beta1, beta2 and tau as mpifl; the
NumPy loop runs the paper's maths, which is mpifl's.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from fedopt_common import SETTINGS, accuracy, load, local_train
from softmax_sgd import sgd_epoch


def main(algorithm: str, path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAdam, FedProx
    from flwr.simulation import run_simulation

    X, y, clients, Xt, yt = load(path)
    n_clients = len(clients)
    shape = (X.shape[1] + 1, int(max(y.max(), yt.max()) + 1))
    stamps, result = [], [float("nan")]

    class SoftmaxClient(NumPyClient):
        def __init__(self, k: int):
            X_all, y_all, rows, _, _ = load(path)
            self.k, self.X, self.y = k, X_all[rows[k]], y_all[rows[k]]

        def fit(self, parameters, config):
            mu = float(config.get("proximal_mu", 0.0))
            rows = np.arange(self.y.size)
            W = local_train(parameters[0].copy(), self.X, self.y, rows, int(config["round"]), self.k, mu, sgd_epoch)
            return [W], self.y.size, {}

    def client_fn(context: Context):
        return SoftmaxClient(int(context.node_config["partition-id"])).to_client()

    def evaluate(rnd, parameters, config):
        stamps.append(time.perf_counter())
        result[0] = accuracy(parameters[0], Xt, yt)
        return 0.0, {"accuracy": result[0]}

    def server_fn(context: Context):
        s = SETTINGS
        common = dict(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients,
                      min_available_clients=n_clients, evaluate_fn=evaluate,
                      on_fit_config_fn=lambda rnd: {"round": rnd},
                      initial_parameters=ndarrays_to_parameters([np.zeros(shape)]))
        if algorithm == "fedprox":
            strategy = FedProx(proximal_mu=s["mu"], **common)
        else:
            strategy = FedAdam(eta=s["eta"], eta_l=s["lr"], beta_1=s["beta1"], beta_2=s["beta2"], tau=s["tau"],
                               **common)
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(ServerApp(server_fn=server_fn), ClientApp(client_fn=client_fn), num_supernodes=n_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    per_round = float(np.median(np.diff(stamps[1:]))) if len(stamps) > 2 else float("nan")
    json.dump({"accuracy": result[0], "seconds_per_round": per_round, "rounds_timed": len(stamps) - 1,
               "train_seconds": time.perf_counter() - t_start}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

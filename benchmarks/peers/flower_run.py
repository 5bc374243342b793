"""The part every Flower FedAvg peer shares: a full-participation FedAvg simulation, timed by central evaluation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def simulate_fedavg(client_fn, start: list[np.ndarray], n_clients: int, rounds: int, evaluate, t_start: float,
                    out: str) -> None:
    """Run ``rounds`` of FedAvg over ``n_clients`` simulated clients from ``start``; ``evaluate(parameters)``
    returns the test accuracy.  Writes the accuracy and the median seconds between central evaluations to ``out``."""
    from flwr.client import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    stamps, accuracy = [], [float("nan")]

    def evaluate_fn(rnd, parameters, config):
        accuracy[0] = float(evaluate(parameters))
        stamps.append(time.perf_counter())
        return 0.0, {"accuracy": accuracy[0]}

    def server_fn(context):
        strategy = FedAvg(
            fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients, min_available_clients=n_clients,
            evaluate_fn=evaluate_fn, on_fit_config_fn=lambda rnd: {"round": rnd},
            initial_parameters=ndarrays_to_parameters(start),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    run_simulation(ServerApp(server_fn=server_fn), ClientApp(client_fn=client_fn), num_supernodes=n_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    per_round = float(np.median(np.diff(stamps[1:]))) if len(stamps) > 2 else float("nan")  # stamp 0: initial model
    with open(out, "w") as f:
        json.dump({"accuracy": accuracy[0], "seconds_per_round": per_round, "rounds_timed": len(stamps) - 1,
                   "train_seconds": time.perf_counter() - t_start}, f)


class TorchPartition:
    """An mpifl partition directory as Flower's PyTorch clients read it: the sizes, each client's own rows, and
    the central test rows (one torch thread per process, as mpifl's ranks run).  It holds no rows itself: the
    client functions that capture it travel to Flower's workers, and must stay small."""

    def __init__(self, root: str):
        import torch

        torch.set_num_threads(1)
        self.root = Path(root)
        self.manifest = json.loads((self.root / "manifest.json").read_text())
        self.n_clients = len(self.manifest["clients"])
        self.features, self.classes = self.manifest["n_features"], self.manifest["n_classes"]

    def seeded(self, build):
        """``build(features, classes)`` from torch's seed 0: the start every client and the server share."""
        import torch

        torch.manual_seed(0)
        return build(self.features, self.classes)

    def test(self):
        """The central test rows, (X, y) tensors, for the server's evaluation."""
        import torch

        return (torch.from_numpy(np.load(self.root / "test" / "X.npy")),
                torch.from_numpy(np.load(self.root / "test" / "y.npy").astype(np.int64)))

    def client(self, k: int):
        """Client k's (X, y) tensors, from its own files only."""
        import torch

        folder = self.root / self.manifest["clients"][k]["dir"]
        return (torch.from_numpy(np.load(folder / "X.npy", mmap_mode="r").copy()),
                torch.from_numpy(np.load(folder / "y.npy").astype(np.int64)))

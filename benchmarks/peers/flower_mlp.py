"""The FedAvg 2NN round in Flower's simulation engine with a PyTorch client, on an mpifl partition directory.

    python benchmarks/peers/flower_mlp.py PARTITION_DIR ROUNDS LR OUT.json

Each client reads only its own files (client_NNNNN/X.npy and y.npy, memory
mapped), trains one local epoch at B = 10 with plain SGD in a standard
``nn.Sequential`` (one torch thread), and returns its weights; the server
averages them by sample count (FedAvg) and evaluates centrally on the test
files after every round, which also stamps the round times.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from flower_run import TorchPartition, simulate_fedavg

BATCH = 10
HIDDEN = (200, 200)


def network(features: int, classes: int):
    import torch

    layers, widths = [], (features, *HIDDEN, classes)
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def main(root: str, rounds: int, lr: float, out: str) -> None:
    t_start = time.perf_counter()
    import torch
    from flwr.client import NumPyClient
    from flwr.common import Context

    data = TorchPartition(root)
    Xt, yt = data.test()
    start = [p.detach().numpy().copy() for p in data.seeded(network).parameters()]

    class MlpClient(NumPyClient):
        def __init__(self, k: int):
            self.k = k
            self.X, self.y = data.client(k)
            self.net = network(data.features, data.classes)

        def fit(self, parameters, config):
            with torch.no_grad():
                for p, value in zip(self.net.parameters(), parameters):
                    p.copy_(torch.from_numpy(value))
            optimiser = torch.optim.SGD(self.net.parameters(), lr=lr)
            criterion = torch.nn.CrossEntropyLoss()
            order = torch.from_numpy(np.random.default_rng([int(config["round"]), self.k]).permutation(len(self.y)))
            for s in range(0, len(order), BATCH):
                rows = order[s:s + BATCH]
                optimiser.zero_grad()
                criterion(self.net(self.X[rows]), self.y[rows]).backward()
                optimiser.step()
            return [p.detach().numpy().copy() for p in self.net.parameters()], len(self.y), {}

    def client_fn(context: Context):
        return MlpClient(int(context.node_config["partition-id"])).to_client()

    def accuracy(parameters) -> float:
        net = network(data.features, data.classes)
        with torch.no_grad():
            for p, value in zip(net.parameters(), parameters):
                p.copy_(torch.from_numpy(value))
            return float((net(Xt).argmax(dim=1) == yt).float().mean())

    simulate_fedavg(client_fn, start, data.n_clients, rounds, accuracy, t_start, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])

"""A CNN with BatchNorm in Flower's simulation engine, the Flower tutorial's way: the whole state_dict travels.

    python benchmarks/peers/flower_cnn.py PARTITION_DIR ROUNDS LR OUT.json

Each client reads only its own files, loads the global state_dict (weights
and BatchNorm statistics), trains one local epoch at B = 10 with plain SGD
(one torch thread) and returns its state_dict; the server averages them by
sample count (FedAvg) and evaluates centrally, in eval mode, after every
round, which also stamps the round times.  ``network`` is also the module
mpifl's torch adapter trains in benchmarks/cnn_federated.py.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from flower_run import TorchPartition, simulate_fedavg

BATCH = 10


def network(features: int, classes: int):
    """Two 3x3 convolutions with BatchNorm, ReLU and 2x2 pooling, then a linear head, for 28x28 images."""
    from torch import nn

    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                         nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, classes))


def main(root: str, rounds: int, lr: float, out: str) -> None:
    t_start = time.perf_counter()
    import torch
    from flwr.client import NumPyClient
    from flwr.common import Context

    data = TorchPartition(root)
    Xt, yt = data.test()
    start = [v.detach().numpy().copy() for v in data.seeded(network).state_dict().values()]

    def load(net, values) -> None:
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in zip(net.state_dict(), values)})

    class CnnClient(NumPyClient):
        def __init__(self, k: int):
            self.k = k
            self.X, self.y = data.client(k)
            self.net = network(data.features, data.classes)

        def fit(self, parameters, config):
            load(self.net, parameters)
            self.net.train()
            optimiser = torch.optim.SGD(self.net.parameters(), lr=lr)
            criterion = torch.nn.CrossEntropyLoss()
            order = torch.from_numpy(np.random.default_rng([int(config["round"]), self.k]).permutation(len(self.y)))
            for s in range(0, len(order), BATCH):
                rows = order[s:s + BATCH]
                if len(rows) < 2:
                    continue
                optimiser.zero_grad()
                criterion(self.net(self.X[rows]), self.y[rows]).backward()
                optimiser.step()
            return [v.detach().numpy().copy() for v in self.net.state_dict().values()], len(self.y), {}

    def client_fn(context: Context):
        return CnnClient(int(context.node_config["partition-id"])).to_client()

    def accuracy(parameters) -> float:
        net = network(data.features, data.classes)
        load(net, parameters)
        net.eval()
        with torch.no_grad():
            return float((net(Xt).argmax(dim=1) == yt).float().mean())

    simulate_fedavg(client_fn, start, data.n_clients, rounds, accuracy, t_start, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])

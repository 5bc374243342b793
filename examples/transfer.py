"""Transfer learning in two jobs: train a network centrally on digits 0-4, then fine-tune it federated on 5-9.

    python examples/transfer.py parts/transfer          # the two partitions below, from the built-in digits
    mpirun -n 2 python -m mpifl run examples/transfer_pretrain.toml --out runs/transfer_pretrain
    mpirun -n 4 python -m mpifl run examples/transfer_finetune.toml --out runs/transfer_finetune

The first job trains ``net`` (a body of two hidden layers and a head) on
digits 0-4 in distributed mode and writes ``model.pt``, its state_dict.  The
second builds ``frozen_body``, the same network with its body frozen
(``requires_grad = False``), starts it from that file (``model.init``) and
trains only the head on clients who hold digits 5-9.  The body never
travels: each round moves the head's 650 values, not the network's 8,970.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from torch import nn

HIDDEN = 64


class Net(nn.Module):
    def __init__(self, n_features: int, n_outputs: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU())
        self.head = nn.Linear(HIDDEN, n_outputs)

    def forward(self, x):
        return self.head(self.body(x))


def net(n_features: int, n_outputs: int) -> nn.Module:
    return Net(n_features, n_outputs)


def frozen_body(n_features: int, n_outputs: int) -> nn.Module:
    """The pretrained body stays as loaded; only the head trains and travels."""
    module = Net(n_features, n_outputs)
    module.body.requires_grad_(False)
    return module


def write(out: Path, clients: int = 10, seed: int = 0) -> None:
    """parts/pretrain: digits 0-4 in 8 parts (up to 8 workers); parts/finetune: digits 5-9 over Dirichlet(0.5)
    clients.  Both keep all ten labels, so the head has ten outputs in both jobs."""
    from mpifl.data.builtin import load_digits
    from mpifl.data.partition import dirichlet, split_train_test
    from mpifl.data.partition_cli import write_partition
    from mpifl.rng import Purpose, stream

    X, y = load_digits()
    labels = list(range(10))
    for name, classes, k in (("pretrain", (0, 1, 2, 3, 4), 8), ("finetune", (5, 6, 7, 8, 9), clients)):
        rows = np.flatnonzero(np.isin(y, classes))
        train, test = split_train_test(rows.size, 0.2, stream(seed, Purpose.SPLIT))
        parts = dirichlet(y[rows[train]].astype(int), k, 0.5, stream(seed, Purpose.PARTITION))
        write_partition(out / name, X, y, [rows[train][p] for p in parts], rows[test], np.dtype("float32"), labels,
                        {"source": f"digits {classes[0]}-{classes[-1]}", "method": "dirichlet", "alpha": 0.5})


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "parts/transfer"))

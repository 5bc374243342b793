"""FedAvg of softmax regression in a plain sequential NumPy loop: the baseline with no framework at all.

    python benchmarks/peers/numpy_fedavg.py DATA.npz ROUNDS OUT.json

DATA.npz holds X_train, y_train, X_test, y_test and client_ids (one per
training row), as written by benchmarks/run.py.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from softmax_sgd import sgd_epoch


def main(path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    data = np.load(path)
    X, y, Xt, yt, ids = (data[k] for k in ("X_train", "y_train", "X_test", "y_test", "client_ids"))
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    classes = int(max(y.max(), yt.max()) + 1)
    clients = [np.flatnonzero(ids == k) for k in range(int(ids.max()) + 1)]
    W = np.zeros((X.shape[1] + 1, classes))
    stamps = []
    for rnd in range(rounds):
        total, weight = np.zeros_like(W), 0
        for k, rows in enumerate(clients):
            local = W.copy()
            rng = np.random.default_rng([rnd, k])
            sgd_epoch(local, X, y, rows[rng.permutation(rows.size)])
            total += rows.size * local
            weight += rows.size
        W = total / weight
        stamps.append(time.perf_counter())
    accuracy = float(np.mean(np.argmax(Xt @ W[:-1] + W[-1], axis=1) == yt))
    per_round = float(np.median(np.diff(stamps))) if len(stamps) > 1 else float("nan")
    json.dump({"accuracy": accuracy, "seconds_per_round": per_round,
               "train_seconds": stamps[-1] - t_start}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])

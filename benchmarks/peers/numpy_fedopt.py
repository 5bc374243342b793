"""FedProx and FedAdam of softmax regression in a plain sequential NumPy loop (full participation).

    python benchmarks/peers/numpy_fedopt.py fedprox|fedadam DATA.npz ROUNDS OUT.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from fedopt_common import SETTINGS, PaperFedAdam, accuracy, load, local_train
from softmax_sgd import sgd_epoch


def main(algorithm: str, path: str, rounds: int, out: str) -> None:
    t_start = time.perf_counter()
    X, y, clients, Xt, yt = load(path)
    W = np.zeros((X.shape[1] + 1, int(max(y.max(), yt.max()) + 1)))
    server = PaperFedAdam(W.shape)
    mu = SETTINGS["mu"] if algorithm == "fedprox" else 0.0
    stamps = [time.perf_counter()]
    for rnd in range(1, rounds + 1):
        total, weight = np.zeros_like(W), 0
        for k, rows in enumerate(clients):
            total += rows.size * local_train(W.copy(), X, y, rows, rnd, k, mu, sgd_epoch)
            weight += rows.size
        average = total / weight
        W = average if algorithm == "fedprox" else server.step(W, average - W)
        stamps.append(time.perf_counter())
    json.dump({"accuracy": accuracy(W, Xt, yt), "seconds_per_round": float(np.median(np.diff(stamps))),
               "train_seconds": stamps[-1] - t_start}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])

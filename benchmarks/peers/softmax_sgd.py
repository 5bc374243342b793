"""The local training step the federated peers share: one epoch of mini-batch softmax SGD in NumPy."""

from __future__ import annotations

import numpy as np

BATCH, LR = 32, 0.5


def sgd_epoch(W: np.ndarray, X: np.ndarray, y: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Mean cross-entropy SGD over rows ``order`` of X in batches of 32; W is (d + 1, C), bias last."""
    for s in range(0, order.size, BATCH):
        b = order[s : s + BATCH]
        Z = X[b] @ W[:-1] + W[-1]
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(b.size), y[b]] -= 1.0
        P /= b.size
        W[:-1] -= LR * (X[b].T @ P)
        W[-1] -= LR * P.sum(axis=0)
    return W

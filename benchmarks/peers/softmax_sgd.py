"""The local training step the federated peers share: mini-batch softmax SGD in NumPy."""

from __future__ import annotations

import numpy as np

BATCH, LR = 32, 0.5


def sgd_epoch(W: np.ndarray, X: np.ndarray, y: np.ndarray, order: np.ndarray, batch: int = BATCH, lr: float = LR,
              mu: float = 0.0, anchor: np.ndarray | None = None) -> np.ndarray:
    """Mean cross-entropy SGD over rows ``order`` of X; W is (d + 1, C), bias last.

    With mu > 0 each step adds FedProx's proximal gradient mu (W - anchor).
    """
    for s in range(0, order.size, batch):
        b = order[s : s + batch]
        Z = X[b] @ W[:-1] + W[-1]
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        P /= P.sum(axis=1, keepdims=True)
        P[np.arange(b.size), y[b]] -= 1.0
        P /= b.size
        G = np.vstack([X[b].T @ P, P.sum(axis=0)])
        if mu:
            G += mu * (W - anchor)
        W -= lr * G
    return W

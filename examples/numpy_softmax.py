"""Softmax regression written as one NumPy function: a user's model kind.

A job names it as ``model.kind = "examples.numpy_softmax:NumpySoftmax"``.
It trains the same model as the built-in ``softmax`` kind, whose compiled
kernels it matches to rounding (tests/test_plugins.py checks that), so it is
the template for a model of your own: write ``loss_and_gradient`` for your
model, in NumPy or with Numba's ``@njit``, and give its parameters' shape.
"""

from __future__ import annotations

import numpy as np

from mpifl.models.function import GradientModel


class NumpySoftmax(GradientModel):
    link_name = "softmax"

    @staticmethod
    def shape(n_features, n_outputs):
        return (n_outputs, n_features + 1)  # row c: class c's weights, then its bias

    @staticmethod
    def penalised(shape):
        mask = np.ones(shape, dtype=bool)
        mask[:, -1] = False  # model.l2 spares the biases
        return mask

    @staticmethod
    def loss_and_gradient(theta, X, y, grad):
        logits = X @ theta[:, :-1].T + theta[:, -1]
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        labels = y.astype(np.int64)
        rows = np.arange(labels.size)
        error = np.exp(log_p)
        error[rows, labels] -= 1.0
        grad[:, :-1] += error.T @ X
        grad[:, -1] += error.sum(axis=0)
        return float(-log_p[rows, labels].sum()), int((log_p.argmax(axis=1) == labels).sum())

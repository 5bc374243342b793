"""The losses a booster minimises, as the output links name them: their starting margins and their per-row
gradients and Hessians (compiled: mpifl.trees.gradients)."""

from __future__ import annotations

import math

import numpy as np

from mpifl.trees import gradients as G


class Loss:
    name = ""
    classes_out = 1  # outputs: one tree per output per round
    classifies = False

    def base(self, y_sum: float, n: int, class_counts: np.ndarray) -> np.ndarray: ...

    def gradients(self, scores: np.ndarray, y: np.ndarray, g: np.ndarray, h: np.ndarray) -> None:
        """g[k], h[k] = every output's gradient and Hessian at the scores (n, outputs)."""


class SquaredError(Loss):
    name = "linear"

    def base(self, y_sum, n, class_counts):
        return np.array([y_sum / n])

    def gradients(self, scores, y, g, h):
        G.squared_gradients(scores, y, g, h)


class Logistic(Loss):
    name = "logistic"
    classifies = True

    def base(self, y_sum, n, class_counts):
        p = min(max(class_counts[1] / n, 1e-12), 1 - 1e-12)
        return np.array([math.log(p / (1 - p))])

    def gradients(self, scores, y, g, h):
        G.logistic_gradients(scores, y, g, h)


class Softmax(Loss):
    name = "softmax"
    classifies = True

    def __init__(self, classes: int):
        self.classes_out = classes

    def base(self, y_sum, n, class_counts):
        return np.log(np.maximum(class_counts / n, 1e-12))

    def gradients(self, scores, y, g, h):
        G.softmax_gradients(scores, y, g, h)

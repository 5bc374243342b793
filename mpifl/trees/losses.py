"""The losses a booster minimises, as the output links name them: their starting margins and their per-row
gradients and Hessians (compiled: mpifl.trees.gradients); and a forest's tasks, whose trees fit fixed targets
under bootstrap weights and whose prediction is the trees' mean.  Each also scores rows (``figures``)."""

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

    def figures(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(the rows' summed loss, how many are predicted right) from their scores (n, outputs)."""


class SquaredError(Loss):
    name = "linear"

    def base(self, y_sum, n, class_counts):
        return np.array([y_sum / n])

    def gradients(self, scores, y, g, h):
        G.squared_gradients(scores, y, g, h)

    def figures(self, scores, y):
        return float(((scores[:, 0] - y) ** 2).sum()) / 2, 0.0


class Logistic(Loss):
    name = "logistic"
    classifies = True

    def base(self, y_sum, n, class_counts):
        p = min(max(class_counts[1] / n, 1e-12), 1 - 1e-12)
        return np.array([math.log(p / (1 - p))])

    def gradients(self, scores, y, g, h):
        G.logistic_gradients(scores, y, g, h)

    def figures(self, scores, y):
        z = scores[:, 0]
        return float((np.logaddexp(0.0, z) - y * z).sum()), float(((z > 0) == (y > 0.5)).sum())


class Softmax(Loss):
    name = "softmax"
    classifies = True

    def __init__(self, classes: int):
        self.classes_out = classes

    def base(self, y_sum, n, class_counts):
        return np.log(np.maximum(class_counts / n, 1e-12))

    def gradients(self, scores, y, g, h):
        G.softmax_gradients(scores, y, g, h)

    def figures(self, scores, y):
        top = scores.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
        labels = y.astype(np.int64)
        return (float((log_norm - scores[np.arange(len(y)), labels]).sum()),
                float((scores.argmax(axis=1) == labels).sum()))


PROBABILITY_FLOOR = 1e-15  # a forest's log loss clips its shares, as scikit-learn's log_loss does


class Averaged(Loss):
    """A random forest's task: each tree fits a fixed target under bootstrap weights w (gradient -w t, Hessian
    w, no L2, so a leaf holds its rows' weighted mean target and a split's gain is the weighted variance it
    removes: for a 0/1 target, half the weighted Gini decrease); the learning rate 1/trees makes the model the
    trees' mean."""

    gini = False  # K classes: one tree over every class, split by the Gini decrease (mpifl.trees.grower.ClassCounts)

    def base(self, y_sum, n, class_counts):
        return np.zeros(self.classes_out)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Each row's target (a two-class or regression forest's one output)."""
        return y


class ForestMean(Averaged):
    name = "forest_linear"

    def figures(self, scores, y):
        return float(((scores[:, 0] - y) ** 2).sum()) / 2, 0.0


class ForestVote(Averaged):
    """Two classes: one tree per member on the label (0/1), so its split is exactly the Gini split; the mean is
    the share of class 1."""

    name = "forest_logistic"
    classifies = True

    def figures(self, scores, y):
        p = np.clip(scores[:, 0], PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum()), float(((scores[:, 0] > 0.5) == (y > 0.5)).sum())


class ForestVotes(Averaged):
    """K classes: one tree per member over every class, split by the Gini decrease as CART splits, each leaf the
    classes' weighted shares (stored as K trees of the same nodes, one per class's share); the means are the
    classes' shares."""

    name = "forest_softmax"
    classifies = True
    gini = True

    def __init__(self, classes: int):
        self.classes_out = classes

    def figures(self, scores, y):
        labels = y.astype(np.int64)
        shares = shares_of(scores)
        picked = np.clip(shares[np.arange(len(y)), labels], PROBABILITY_FLOOR, 1.0)
        return float(-np.log(picked).sum()), float((scores.argmax(axis=1) == labels).sum())


def shares_of(scores: np.ndarray) -> np.ndarray:
    """A forest's class shares (n, K) from its per-class means: clipped at 0 and normalised (uniform where every
    class's tree mean is 0)."""
    s = np.maximum(scores, 0.0)
    total = s.sum(axis=1, keepdims=True)
    return np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / s.shape[1])

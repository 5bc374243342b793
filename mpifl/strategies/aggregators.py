"""Robust aggregation: how a round's client deltas become one, when some clients may be Byzantine.

Each aggregator takes the round's deltas as rows of a float64 matrix (one per
client, flattened) and the clients' sample weights, and returns the combined
delta and what it learned about the clients: which it selected, or how much
weight each kept.  Strategies that average deltas (FedAvg, FedProx, FedAvgM,
FedAdagrad, FedAdam, FedYogi) call the configured one in place of the
weighted mean (``server.aggregator``); each is written from its paper:

- ``mean``: the sample-weighted mean (McMahan et al. 2017), the default;
- ``median``: coordinate-wise median (Yin et al. 2018);
- ``trimmed_mean``: coordinate-wise mean without the floor(beta n) smallest and
  largest values (Yin et al. 2018);
- ``krum``, ``multikrum``: the update, or the mean of the m updates, with the
  least summed squared distance to its n - f - 2 nearest others (Blanchard et al. 2017);
- ``bulyan``: n - 2f updates picked by repeated Krum, then per coordinate the
  mean of the n - 4f values nearest the median (El Mhamdi et al. 2018);
- ``geomed``: the weighted geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022);
- ``centered_clip``: steps from the previous round's aggregate by the mean of the
  differences clipped to radius tau (Karimireddy et al. 2021);
- ``norm_bound``: every update scaled to norm at most M, then the weighted mean (Sun et al. 2019).

Pure NumPy: no MPI, and nothing here sees where the rows came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

NAMES = ("mean", "median", "trimmed_mean", "krum", "multikrum", "bulyan", "geomed", "centered_clip", "norm_bound")


@dataclass(frozen=True)
class Combined:
    """An aggregator's output: the combined delta, the clients (row positions) it selected if it selects,
    and the weight each row kept if it reweights."""

    delta: np.ndarray
    selected: np.ndarray | None = None
    kept: np.ndarray | None = None


@dataclass
class Aggregator:
    """The configured aggregator and its parameters; ``previous`` is centered clipping's state."""

    name: str = "mean"
    trim: float = 0.1  # trimmed_mean: share dropped at each end
    byzantine: int = 1  # krum, multikrum, bulyan: the f Byzantine clients tolerated
    select: int = 0  # multikrum: the m updates averaged (0: n - f)
    radius: float = 1.0  # centered_clip: tau; norm_bound: M
    iterations: int = 10  # geomed: Weiszfeld iterations; centered_clip: clipping iterations
    smoothing: float = 1e-6  # geomed: nu, the least distance a weight divides by
    previous: np.ndarray | None = field(default=None, repr=False)

    def problem(self, n: int) -> str | None:
        """Why this aggregator cannot run on rounds of n updates, with the numbers; None if it can."""
        f = self.byzantine
        if self.name in ("krum", "multikrum") and n <= 2 * f + 2:
            return (f"{self.name} with server.byzantine = {f} needs more than 2f + 2 = {2 * f + 2} updates a round; "
                    f"this job has {n}. Sample more clients or lower server.byzantine.")
        if self.name == "multikrum" and self.select > n - f:
            return f"multikrum averages server.select = {self.select} updates, at most n - f = {n - f} here."
        if self.name == "bulyan" and n < 4 * f + 3:
            return (f"bulyan with server.byzantine = {f} needs at least 4f + 3 = {4 * f + 3} updates a round; "
                    f"this job has {n}. Sample more clients or lower server.byzantine.")
        if self.name == "trimmed_mean" and 2 * math.floor(self.trim * n) >= n:
            return f"trimmed_mean with server.trim = {self.trim} drops all {n} updates; keep 2 floor(trim n) < n."
        return None

    def __call__(self, rows: np.ndarray, weights: np.ndarray) -> Combined:
        """Combine rows (n, P) with sample weights (n,); rows are float64."""
        n = rows.shape[0]
        problem = self.problem(n)
        if problem:
            raise ValueError(problem)
        if self.name == "mean":
            return Combined(weighted(rows, weights))
        if self.name == "median":
            return Combined(np.median(rows, axis=0))
        if self.name == "trimmed_mean":
            return Combined(trimmed_mean(rows, math.floor(self.trim * n)))
        if self.name == "krum":
            best = int(np.argmin(krum_scores(rows, self.byzantine)))
            return Combined(rows[best].copy(), selected=np.array([best]))
        if self.name == "multikrum":
            m = self.select or n - self.byzantine
            chosen = np.sort(np.argsort(krum_scores(rows, self.byzantine), kind="stable")[:m])
            return Combined(rows[chosen].mean(axis=0), selected=chosen)
        if self.name == "bulyan":
            return bulyan(rows, self.byzantine)
        if self.name == "geomed":
            return geometric_median(rows, weights, self.iterations, self.smoothing)
        if self.name == "centered_clip":
            start = self.previous if self.previous is not None else np.zeros(rows.shape[1])
            combined = centered_clip(rows, start, self.radius, self.iterations)
            self.previous = combined.delta.copy()
            return combined
        return norm_bounded(rows, weights, self.radius)


def weighted(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (weights.astype(np.float64) @ rows) / float(weights.sum())


def trimmed_mean(rows: np.ndarray, drop: int) -> np.ndarray:
    """Per coordinate: sort, drop ``drop`` values at each end, average the rest."""
    ordered = np.sort(rows, axis=0)
    return ordered[drop:rows.shape[0] - drop].mean(axis=0)


def squared_distances(rows: np.ndarray) -> np.ndarray:
    """(n, n) squared Euclidean distances, from the Gram matrix, clipped at 0 against rounding."""
    sq = np.einsum("ij,ij->i", rows, rows)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * rows @ rows.T, 0.0)


def krum_scores(rows: np.ndarray, f: int) -> np.ndarray:
    """Each row's summed squared distance to its n - f - 2 nearest other rows (none, so all zero, when
    n - f - 2 <= 0: Bulyan's last picks run Krum on sets that small)."""
    n = rows.shape[0]
    d = squared_distances(rows)
    np.fill_diagonal(d, np.inf)
    nearest = np.sort(d, axis=1)[:, :max(n - f - 2, 0)]
    return nearest.sum(axis=1)


def bulyan(rows: np.ndarray, f: int) -> Combined:
    """Pick theta = n - 2f rows by Krum, one at a time from those left; then per coordinate average the
    beta = theta - 2f picked values closest to their median."""
    n = rows.shape[0]
    left = list(range(n))
    picked = []
    for _ in range(n - 2 * f):
        picked.append(left.pop(int(np.argmin(krum_scores(rows[left], f)))))
    chosen = rows[picked]
    beta = len(picked) - 2 * f
    median = np.median(chosen, axis=0)
    closest = np.argsort(np.abs(chosen - median), axis=0, kind="stable")[:beta]
    return Combined(np.take_along_axis(chosen, closest, axis=0).mean(axis=0), selected=np.sort(np.array(picked)))


def geometric_median(rows: np.ndarray, weights: np.ndarray, iterations: int, nu: float) -> Combined:
    """Smoothed Weiszfeld: z <- sum_k b_k x_k / sum_k b_k, b_k = a_k / max(nu, |z - x_k|), from the weighted mean."""
    alpha = weights.astype(np.float64) / float(weights.sum())
    z = alpha @ rows
    for _ in range(iterations):
        b = alpha / np.maximum(nu, np.linalg.norm(rows - z, axis=1))
        z = (b @ rows) / b.sum()
    b = alpha / np.maximum(nu, np.linalg.norm(rows - z, axis=1))
    return Combined(z, kept=b / b.sum())


def centered_clip(rows: np.ndarray, start: np.ndarray, tau: float, iterations: int) -> Combined:
    """v <- v + mean_k (x_k - v) min(1, tau / |x_k - v|), ``iterations`` times from ``start``."""
    v = start.astype(np.float64, copy=True)
    for _ in range(iterations):
        diff = rows - v
        scale = np.minimum(1.0, tau / np.maximum(np.linalg.norm(diff, axis=1), 1e-300))
        v = v + (scale[:, None] * diff).mean(axis=0)
    return Combined(v, kept=scale)


def norm_bounded(rows: np.ndarray, weights: np.ndarray, bound: float) -> Combined:
    """Each row scaled to norm at most ``bound``, then the weighted mean."""
    scale = np.minimum(1.0, bound / np.maximum(np.linalg.norm(rows, axis=1), 1e-300))
    return Combined(weighted(rows * scale[:, None], weights), kept=scale)

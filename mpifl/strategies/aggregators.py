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
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mpifl.constraints import Constraint, Interval
from mpifl.registry import Registry, defaults



@dataclass(frozen=True)
class Combined:
    """An aggregator's output: the combined delta, the clients (row positions) it selected if it selects,
    and the weight each row kept if it reweights."""

    delta: np.ndarray
    selected: np.ndarray | None = None
    kept: np.ndarray | None = None


class Aggregator(ABC):
    """Combines a round's rows (n, P) of float64 deltas with their sample weights into one delta.

    A subclass declares its ``name``, its ``server.<key>`` ``parameters`` as
    (default, constraint), and says through ``needs_rows`` whether it needs
    each client's own row (every robust rule does; the mean needs only sums,
    so it alone works under secure aggregation and differential privacy).
    State that must survive a resume (centered clipping's last aggregate) is
    returned by ``state()``, allocated in ``prepare``, and restored in place.
    """

    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}
    needs_rows: ClassVar[bool] = True

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = {**defaults(type(self)), **(params or {})}

    def prepare(self, size: int) -> None:
        """Allocate state for deltas of ``size`` values (called once, before any round or resume)."""

    def problem(self, n: int) -> str | None:
        """Why this aggregator cannot run on rounds of n updates, with the numbers; None if it can."""
        return None

    @abstractmethod
    def combine(self, rows: np.ndarray, weights: np.ndarray) -> Combined:
        """The combined delta of rows (n, P), float64, with sample weights (n,)."""

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def __call__(self, rows: np.ndarray, weights: np.ndarray) -> Combined:
        problem = self.problem(rows.shape[0])
        if problem:
            raise ValueError(problem)
        return self.combine(rows, weights)


BYZANTINE = {"byzantine": (1, Interval(int, 0, None))}  # krum, multikrum, bulyan: the f Byzantine clients tolerated
RADIUS = {"radius": (1.0, Interval(float, 0, None, "neither"))}  # centered_clip: tau; norm_bound: M
ITERATIONS = {"robust_iterations": (10, Interval(int, 1, 10_000))}  # geomed: Weiszfeld steps; centered_clip: L


class Mean(Aggregator):
    name = "mean"
    needs_rows = False

    def combine(self, rows, weights):
        return Combined(weighted(rows, weights))


class Median(Aggregator):
    name = "median"

    def combine(self, rows, weights):
        return Combined(np.median(rows, axis=0))


class TrimmedMean(Aggregator):
    name = "trimmed_mean"
    parameters = {"trim": (0.1, Interval(float, 0, 0.5, "left"))}  # the share dropped at each end

    def problem(self, n):
        trim = self.params["trim"]
        if 2 * math.floor(trim * n) >= n:
            return f"trimmed_mean with server.trim = {trim} drops all {n} updates; keep 2 floor(trim n) < n."
        return None

    def combine(self, rows, weights):
        return Combined(trimmed_mean(rows, math.floor(self.params["trim"] * rows.shape[0])))


class Krum(Aggregator):
    name = "krum"
    parameters = BYZANTINE

    def problem(self, n):
        f = self.params["byzantine"]
        if n <= 2 * f + 2:
            return (f"{self.name} with server.byzantine = {f} needs more than 2f + 2 = {2 * f + 2} updates a round; "
                    f"this job has {n}. Sample more clients or lower server.byzantine.")
        return None

    def combine(self, rows, weights):
        best = int(np.argmin(krum_scores(rows, self.params["byzantine"])))
        return Combined(rows[best].copy(), selected=np.array([best]))


class MultiKrum(Krum):
    name = "multikrum"
    parameters = {**BYZANTINE, "select": (0, Interval(int, 0, None))}  # the m updates averaged (0: n - f)

    def problem(self, n):
        f, m = self.params["byzantine"], self.params["select"]
        if m > n - f:
            return f"multikrum averages server.select = {m} updates, at most n - f = {n - f} here."
        return super().problem(n)

    def combine(self, rows, weights):
        f = self.params["byzantine"]
        m = self.params["select"] or rows.shape[0] - f
        chosen = np.sort(np.argsort(krum_scores(rows, f), kind="stable")[:m])
        return Combined(rows[chosen].mean(axis=0), selected=chosen)


class Bulyan(Aggregator):
    name = "bulyan"
    parameters = BYZANTINE

    def problem(self, n):
        f = self.params["byzantine"]
        if n < 4 * f + 3:
            return (f"bulyan with server.byzantine = {f} needs at least 4f + 3 = {4 * f + 3} updates a round; "
                    f"this job has {n}. Sample more clients or lower server.byzantine.")
        return None

    def combine(self, rows, weights):
        return bulyan(rows, self.params["byzantine"])


class GeometricMedian(Aggregator):
    name = "geomed"
    parameters = ITERATIONS
    smoothing = 1e-6  # nu, the least distance a weight divides by

    def combine(self, rows, weights):
        return geometric_median(rows, weights, self.params["robust_iterations"], self.smoothing)


class CenteredClip(Aggregator):
    name = "centered_clip"
    parameters = {**RADIUS, **ITERATIONS}

    def __init__(self, params=None):
        super().__init__(params)
        self.previous: np.ndarray | None = None  # the last round's aggregate, where the next one starts

    def prepare(self, size):
        self.previous = np.zeros(size)

    def combine(self, rows, weights):
        start = self.previous if self.previous is not None else np.zeros(rows.shape[1])
        combined = centered_clip(rows, start, self.params["radius"], self.params["robust_iterations"])
        if self.previous is not None:
            self.previous[...] = combined.delta
        else:
            self.previous = combined.delta.copy()
        return combined

    def state(self):
        return {"previous": self.previous} if self.previous is not None else {}


class NormBound(Aggregator):
    name = "norm_bound"
    parameters = RADIUS

    def combine(self, rows, weights):
        return norm_bounded(rows, weights, self.params["radius"])


def check_aggregator(cls: type) -> str | None:
    """What a user's aggregator must declare beyond its parameters."""
    if not isinstance(cls.needs_rows, bool):
        return f"its 'needs_rows' must be a bool; got {cls.needs_rows!r}."
    return None


AGGREGATORS: Registry = Registry("aggregator", "server.aggregator", Aggregator, check_aggregator)
for _cls in (Mean, Median, TrimmedMean, Krum, MultiKrum, Bulyan, GeometricMedian, CenteredClip, NormBound):
    AGGREGATORS.register(_cls)
NAMES = tuple(AGGREGATORS)


def create(name: str, **params: Any) -> Aggregator:
    """The aggregator a name or path stands for, with the given parameters among those it declares."""
    cls = AGGREGATORS[name]
    return cls({key: value for key, value in params.items() if key in cls.parameters})


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

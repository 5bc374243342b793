"""The alpha-beta (latency-bandwidth) model of MPI collectives, fitted to measurements.

Each collective costs ``alpha * L(p) + beta * V(p, m)`` seconds for p ranks and
m bytes per rank, with the textbook terms of Thakur, Rabenseifner and Gropp
(2005): a log2(p)-deep tree of messages, and the bytes the busiest rank moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

COLLECTIVES = ("Allreduce", "Bcast", "Gather")  # a training round's collectives, fitted by every projection
EXCHANGES = (*COLLECTIVES, "Allgather")  # with compressed updates' Allgather (mpifl.compressed_sum)


def latency_term(p: int) -> float:
    """Message steps on the critical path: a binomial tree or recursive doubling."""
    return float(math.ceil(math.log2(p))) if p > 1 else 0.0


def volume_term(collective: str, p: int, m: float) -> float:
    """Bytes through the busiest rank's link for m bytes per rank."""
    if p <= 1:
        return 0.0
    if collective == "Allreduce":  # reduce-scatter + allgather (Rabenseifner)
        return 2.0 * (p - 1) / p * m
    if collective == "Bcast":  # scatter + allgather for large messages
        return 2.0 * (p - 1) / p * m
    if collective in ("Gather", "Allgather"):  # the root (every rank) receives every other rank's m bytes
        return (p - 1) * m
    raise ValueError(f"Unknown collective {collective!r}; expected one of {EXCHANGES}.")


@dataclass(frozen=True)
class Fit:
    """alpha (seconds per message step) and beta (seconds per byte) of one collective."""

    collective: str
    alpha: float
    beta: float
    points: int
    rms_relative_error: float

    def seconds(self, p: int, m: float) -> float:
        return self.alpha * latency_term(p) + self.beta * volume_term(self.collective, p, m)


def fit(collective: str, samples: list[tuple[int, float, float]]) -> Fit:
    """Least squares in relative error over (ranks, bytes, seconds) samples with ranks >= 2.

    Relative error weights a 10 us and a 10 ms measurement alike, so the fit
    serves latency-bound and bandwidth-bound sizes both.  alpha and beta are
    kept non-negative.
    """
    rows = [(p, m, t) for p, m, t in samples if p >= 2 and t > 0]
    if len(rows) < 2:
        raise ValueError(f"Fitting {collective} needs at least 2 measurements on 2 or more ranks; got {len(rows)}.")
    A = np.array([[latency_term(p), volume_term(collective, p, m)] for p, m, _ in rows])
    t = np.array([row[2] for row in rows])
    weighted = A / t[:, None]
    coef = _nonnegative_lstsq(weighted, np.ones_like(t))
    predicted = A @ coef
    rms = float(np.sqrt(np.mean((predicted / t - 1.0) ** 2)))
    return Fit(collective, float(coef[0]), float(coef[1]), len(rows), rms)


def _nonnegative_lstsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two-variable non-negative least squares: the unconstrained solution, else the best one-variable one."""
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    if (coef >= 0).all():
        return coef
    best, best_residual = np.zeros(2), float(b @ b)
    for j in range(2):
        col = A[:, j]
        denom = float(col @ col)
        if denom > 0:
            c = max(float(col @ b) / denom, 0.0)
            trial = np.zeros(2)
            trial[j] = c
            residual = float(np.sum((A @ trial - b) ** 2))
            if residual < best_residual:
                best, best_residual = trial, residual
    return best

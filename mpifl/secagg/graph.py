"""Who shares secrets and masks with whom in a round.

SecAgg (Bonawitz et al. 2017): every pair of the cohort.  SecAgg+ (Bell et
al. 2020): a Harary graph of even degree k over a random permutation of the
cohort, drawn from (seed, round) so every party computes the same graph;
with k = O(log n) each client's work grows as log n instead of n.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.rng import Purpose, stream


def default_degree(n: int) -> int:
    """SecAgg+'s k when secagg.neighbours is 0: the smallest even number >= 3 log2 n, at most n - 1."""
    k = 2 * math.ceil(1.5 * math.log2(max(n, 2)))
    return min(k, n - 1 - (n - 1) % 2) if n > 2 else n - 1


def neighbours(cohort: np.ndarray, seed: int, rnd: int, degree: int | None) -> dict[int, tuple[int, ...]]:
    """Each cohort client's neighbours (sorted client ids); ``degree`` None means the complete graph."""
    ids = [int(c) for c in cohort]
    n = len(ids)
    if degree is None or degree >= n - 1:
        return {u: tuple(v for v in ids if v != u) for u in ids}
    order = [ids[i] for i in stream(seed, Purpose.SECAGG, rnd).permutation(n)]
    half = degree // 2
    out: dict[int, set[int]] = {u: set() for u in ids}
    for i, u in enumerate(order):
        for step in range(1, half + 1):
            v = order[(i + step) % n]
            out[u].add(v)
            out[v].add(u)
    return {u: tuple(sorted(vs)) for u, vs in out.items()}

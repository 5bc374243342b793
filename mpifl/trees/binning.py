"""Bin edges from a fine sketch that each participant makes of its own rows, merged by summing.

Each participant counts its values of each feature into SKETCH_BUCKETS equal-width buckets between the
feature's global minimum and maximum (one Allreduce of 2 F values); the counts are summed exactly (one Allreduce
of F * SKETCH_BUCKETS int64, 4 MiB at 32 features: the only thing about the rows that travels), and the edges are
the bucket boundaries where the merged cumulative count crosses each quantile.  Integer counts add the same in
any order, so the edges are the same however the rows are spread over ranks or clients.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import kernel

SKETCH_BUCKETS = 1 << 14


@kernel
def count_buckets(X, lo, hi, counts):
    """counts[f, b] = rows whose feature f falls in bucket b of [lo[f], hi[f]] (NaN rows uncounted)."""
    n, F = X.shape
    S = counts.shape[1]
    counts[:] = 0
    for i in range(n):
        for f in range(F):
            x = X[i, f]
            if x != x:
                continue
            width = hi[f] - lo[f]
            b = 0 if width <= 0.0 else int((x - lo[f]) / width * S)
            counts[f, min(max(b, 0), S - 1)] += 1


def edges_from_counts(counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges (F, bins - 1) padded with +inf, how many each feature has): at most bins - 1 distinct bucket
    boundaries at the quantiles q / bins of the merged counts."""
    F, S = counts.shape
    edges = np.full((F, bins - 1), np.inf)
    n_edges = np.zeros(F, dtype=np.int64)
    for f in range(F):
        total = counts[f].sum()
        if total == 0 or hi[f] <= lo[f]:
            continue
        cumulative = np.cumsum(counts[f])
        targets = np.arange(1, bins) * (total / bins)
        buckets = np.unique(np.searchsorted(cumulative, targets, side="left"))
        buckets = buckets[buckets < S - 1]  # the last bucket's upper boundary is the maximum: no edge
        # an edge only where a value lies on each side of it
        occupied = np.flatnonzero(counts[f])
        buckets = buckets[(buckets >= occupied[0]) & (buckets < occupied[-1])]
        width = (hi[f] - lo[f]) / S
        values = lo[f] + (buckets + 1) * width
        values = np.unique(values)
        edges[f, : values.size] = values
        n_edges[f] = values.size
    return edges, n_edges

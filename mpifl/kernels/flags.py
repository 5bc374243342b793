"""Codes the kernels share: model kinds, what a range kernel computes, and row lookup."""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel

from mpifl.links import KIND_CODES, LOGISTIC, SOFTMAX, SQUARED  # noqa: F401 - the kernels' names for them

# What a range kernel computes; flags are checked once per chunk, never per row.
GRAD = 1
LOSS = 2
CORRECT = 4


@inline_kernel
def row_at(rows, indexed, k):
    """The k-th row of a range: rows[k] for a shuffled order, else k itself; as an unsigned index.

    Numba wraps a negative signed index around, so every access through one
    carries a compare and a select, and LLVM cannot see that row k + 1
    follows row k.  An unsigned index it takes as it is: the float64
    single pass ran 1.3x faster at 1M x 32 (Zen 5).  Arithmetic on the
    result stays unsigned (``r + U1``): an unsigned plus a signed integer is
    a float64 in Numba's rules.
    """
    return np.uint64(rows[k]) if indexed else np.uint64(k)


@inline_kernel
def is_indexed(rows):
    """Whether a range is walked through ``rows`` (a shuffled order) or in storage order (``rows`` empty).

    A runtime value on purpose: ordered and in-order walks share one compiled
    kernel, and the test in row_at is loop-invariant, so LLVM hoists it.
    """
    return rows.shape[0] > 0


@inline_kernel
def subtract_labels(Z, y, rows, indexed, s, m):
    """Z[i] -= y[row s + i] for i < m, in two branch-free loops (shuffled rows, rows in order) that vectorise."""
    if indexed:
        for i in range(m):
            Z[i] -= y[np.uint64(rows[s + i])]
    else:
        for i in range(m):
            Z[i] -= y[np.uint64(s + i)]

"""Warm the JIT before training so compile time is measured on its own.

Numba's on-disk cache makes later runs load instead of compile.  When many
ranks start at once, one rank per node compiles (and writes the cache) while
the others wait, then they load it: no concurrent writers, no 8x compile on
an oversubscribed node.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from mpifl.kernels import ModelKernels
from mpifl.kernels.checks import all_finite, labels_in_range
from mpifl.kernels.prefetch import evict
from mpifl.model import ModelSpec


def warm_up(spec: ModelSpec, threads: int) -> float:
    """Run every kernel once on a tiny problem of the model's types; returns seconds taken."""
    t0 = time.perf_counter()
    kernels = ModelKernels(spec, threads)
    rows = 5
    X = np.ones((rows, spec.n_features), dtype=spec.dtype)
    y = np.zeros(rows, dtype=spec.dtype)
    theta = spec.zeros()
    grad = spec.zeros()
    velocity = spec.zeros()
    order = np.arange(rows, dtype=np.int64)
    kernels.full_gradient_sum(X, y, theta, grad, want_loss=True)
    kernels.batch_gradient_sum(X, y, theta, order, 0, rows, grad)
    kernels.sgd_epoch(X, y, theta, velocity, grad, order, 2, 0.1, 0.5, 0.0, (spec.zeros(), 0.1, spec.zeros()))
    kernels.evaluate_sums(X, y, theta)
    if spec.sparse:
        from mpifl.data.sparse import CSR

        Xs = CSR.from_dense(X)
        kernels.full_gradient_sum(Xs, y, theta, grad, want_loss=True)
        kernels.batch_gradient_sum(Xs, y, theta, order, 0, rows, grad)
        kernels.sgd_epoch(Xs, y, theta, velocity, grad, order, 2, 0.1, 0.5, 0.0, (spec.zeros(), 0.1, spec.zeros()))
        kernels.evaluate_sums(Xs, y, theta)
    kernels.finish_gradient(grad, theta, rows, 0.1)
    all_finite(X.reshape(-1))
    evict(X)  # the variant chooser's cache flush
    labels_in_range(y, 2)
    kernels.penalty(theta, 0.1)
    return time.perf_counter() - t0


def set_threads(threads: int) -> None:
    """Use ``threads`` Numba threads in this process (bounded by NUMBA_NUM_THREADS)."""
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

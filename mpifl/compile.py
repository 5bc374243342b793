"""Warm the JIT before training so compile time is measured on its own.

Only the entry points the job's KernelPlan names are compiled, in the job's
model kind, dtype, layout and variants.  Numba's on-disk cache makes later
runs load instead of compile.  When many ranks start at once, one rank per
node compiles (and writes the cache) while the others wait, then they load
it: no concurrent writers, no 8x compile on an oversubscribed node.
"""

from __future__ import annotations

import time

import numba
import numpy as np

from mpifl.kernel_plan import KernelPlan
from mpifl.kernels import ModelKernels
from mpifl.kernels.checks import all_finite, labels_in_range
from mpifl.kernels.seeding import pool_state
from mpifl.kernels.variants import Selection
from mpifl.model import ModelSpec


def warm_up(spec: ModelSpec, plan: KernelPlan, selection: Selection | None = None) -> float:
    """Call each planned kernel once on a tiny problem of the model's types; returns seconds taken."""
    t0 = time.perf_counter()
    kernels = ModelKernels(spec, plan.threads, selection)
    rows = 5
    X = np.ones((rows, spec.n_features), dtype=spec.dtype)
    y = np.zeros(rows, dtype=spec.dtype)
    theta = spec.zeros()
    grad = spec.zeros()
    if spec.sparse:
        from mpifl.data.sparse import CSR

        X = CSR.from_dense(X)
    order = np.arange(rows, dtype=np.int64)
    if "full_gradient" in plan.operations:
        kernels.full_gradient_sum(X, y, theta, grad, want_loss=True)
    if "batch_gradient" in plan.operations:
        kernels.batch_gradient_sum(X, y, theta, order, 0, rows, grad)
    if "sgd_epoch" in plan.operations or ("cohort_sgd" in plan.operations and spec.sparse):  # sparse: one by one
        kernels.sgd_epoch(X, y, theta, spec.zeros(), grad, order, 2, 0.1, 0.5, 0.0, (spec.zeros(), 0.1, spec.zeros()))
    if "evaluate" in plan.operations:
        kernels.evaluate_sums(X, y, theta)
    if "cohort_sgd" in plan.operations and kernels.trains_cohorts and not spec.sparse:
        kernels.train_cohort(X, y, np.array([0, rows]), np.zeros(3, dtype=np.uint64), np.zeros(1, dtype=np.int64),
                             np.ones(1, dtype=np.int64), theta, np.empty((1, theta.size), dtype=spec.dtype), 2, 0.1,
                             0.0, 0.0)
    if plan.finishes_gradients:
        kernels.finish_gradient(grad, theta, rows, 0.1)
    kernels.penalty(theta, 0.1)
    all_finite(np.ones(rows, dtype=spec.dtype))  # the data checks run while loading
    labels_in_range(y, 2)
    pool_state(np.zeros(2, dtype=np.uint64), np.empty(4, dtype=np.uint64))  # every random stream's seeding
    return time.perf_counter() - t0


_threads_set = False  # whether this process has started Numba's thread pool through set_threads


def set_threads(threads: int) -> None:
    """Use ``threads`` Numba threads in this process (bounded by NUMBA_NUM_THREADS).

    A one-thread job runs only serial kernels, so unless an earlier job in the
    process started the pool, it leaves the pool unstarted: starting it loads
    the threading layer, 14 ms of CPU a rank.
    """
    global _threads_set
    if threads > 1 or _threads_set:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        _threads_set = True

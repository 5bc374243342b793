"""The compiled entry points of one model kind and one variant: the loops the training code calls.

Each entry is a kernel that closes over the kind and variant codes, so Numba
sees them as constants and compiles only that kind's link and that variant's
loops (mpifl.kernels.switch): a job compiles just the entries it calls.
Numba keys its on-disk cache by the closed-over values, so each (kind,
variant) pair is compiled once per machine and loaded afterwards.  The
mini-batch loop runs inside Numba, so no Python runs per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from mpifl.jit import inline_kernel, kernel, threaded_kernel
from mpifl.kernels.cohorts import client_key, epoch_rows, start_client
from mpifl.kernels.drivers import sgd_step, sum_partials
from mpifl.kernels.flags import CORRECT, GRAD, KIND_CODES, LOSS, is_indexed
from mpifl.kernels.losses import range_loss_grad
from mpifl.kernels.sparse import range_loss_grad_csr, whole_range_loss_grad_csr
from mpifl.kernels.variants import VARIANTS

EVALUATE = np.int64(LOSS | CORRECT)  # int64, not a literal: evaluation shares the gradient's compiled range kernel
JUST_GRAD = np.int64(GRAD)

# The calls an entry set offers, by the names a KernelPlan uses.
OPERATIONS = ("full_gradient", "batch_gradient", "sgd_epoch", "evaluate")


@inline_kernel
def dense_epoch(kind, variant, X, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2, anchor, mu,
                correction):
    """One epoch of mini-batch SGD with heavy-ball momentum over dense rows, in the given row order.

    Each step's gradient is the mean data gradient plus l2 * W plus the
    objective hook (anchor, mu, correction); see drivers.objective_hook.
    """
    n = order.shape[0]
    indexed = is_indexed(order)
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        grad[:] = 0
        range_loss_grad(kind, variant, X, y, theta, order, indexed, s, e, grad, Z, E, JUST_GRAD)
        sgd_step(grad, theta, velocity, e - s, lr, momentum, l2, anchor, mu, correction)


@dataclass(frozen=True)
class Entries:
    """One layout's calls; each takes the arrays its loop needs, as ModelKernels passes them."""

    full_gradient: object
    full_gradient_threaded: object
    batch_gradient: object
    sgd_epoch: object
    evaluate: object
    cohort_sgd: object = None  # a cohort of clients' local SGD in one call; dense rows only

    def dispatchers(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if getattr(self, name) is not None}


_BOUND: dict[tuple[str, int, int], Entries] = {}


def entry_points(layout: str, kind: int, variant: int) -> Entries:
    """The entry points of one layout ("dense" or "csr"), kind and variant; made once per process."""
    key = (layout, kind, variant)
    if key not in _BOUND:
        _BOUND[key] = (dense_entries if layout == "dense" else csr_entries)(kind, variant)
    return _BOUND[key]


def compiled() -> list[str]:
    """Every entry point this process has compiled or loaded, as layout/kind/variant/operation."""
    kinds = {code: name for name, code in KIND_CODES.items()}
    return sorted(
        f"{layout}/{kinds[kind]}/{VARIANTS[variant].name}/{name}"
        for (layout, kind, variant), bound in _BOUND.items()
        for name, dispatcher in bound.dispatchers().items() if dispatcher.signatures
    )


def dense_entries(kind: int, variant: int) -> Entries:
    """Entry points for dense rows (2-D C-contiguous X)."""

    @kernel
    def full_gradient(X, y, theta, grad, Z, E, want_loss):
        """Summed data gradient over every row of X; returns the summed loss (0 unless asked)."""
        grad[:] = 0
        what = GRAD | LOSS if want_loss else GRAD
        rows = np.empty(0, dtype=np.int64)
        loss, _ = range_loss_grad(kind, variant, X, y, theta, rows, is_indexed(rows), np.int64(0), X.shape[0], grad,
                                  Z, E, what)
        return loss

    @threaded_kernel
    def full_gradient_threaded(X, y, theta, grad, partial, Zs, Es, want_loss):
        """As full_gradient, split over partial.shape[0] threads.

        Each thread owns one contiguous row range and its own gradient and
        scratch (see drivers.sum_partials).
        """
        T = partial.shape[0]
        n = X.shape[0]
        what = GRAD | LOSS if want_loss else GRAD
        losses = np.zeros(T)
        rows = np.empty(0, dtype=np.int64)
        for t in numba.prange(T):
            partial[t] = 0
            losses[t], _ = range_loss_grad(kind, variant, X, y, theta, rows, is_indexed(rows), t * n // T,
                                           (t + 1) * n // T, partial[t], Zs[t], Es[t], what)
        return sum_partials(grad, partial, losses)

    @kernel
    def batch_gradient(X, y, theta, rows, start, stop, grad, Z, E, want_loss):
        """Summed data gradient over rows[start:stop]; returns the summed loss (0 unless asked)."""
        grad[:] = 0
        what = GRAD | LOSS if want_loss else GRAD
        loss, _ = range_loss_grad(kind, variant, X, y, theta, rows, is_indexed(rows), start, stop, grad, Z, E, what)
        return loss

    @kernel
    def sgd_epoch(X, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2, anchor, mu, correction):
        """One epoch of mini-batch SGD with heavy-ball momentum, in the given row order.

        Each step's gradient is the mean data gradient plus l2 * W plus the
        objective hook (anchor, mu, correction); see drivers.objective_hook.
        """
        dense_epoch(kind, variant, X, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2, anchor, mu,
                    correction)

    @kernel
    def cohort_sgd(X, y, starts, entropy, ids, epochs, theta0, theta, velocity, grad, Z, E, order, deltas,
                   batch_size, lr, momentum, l2, correction):
        """Local SGD of every client of a cohort from theta0, in one call (mpifl.cohort): client i owns rows
        starts[i]:starts[i + 1] of X, trains epochs[i] epochs in batch orders drawn from the stream of
        (entropy..., ids[i]) as mpifl.rng.stream draws them, its velocity from zero, and leaves its delta in
        deltas[i] (flat).  The epochs are sgd_epoch's own loop, so each client's delta is the bytes it would make
        alone."""
        key, g = client_key(entropy)
        C, P = theta.shape
        for i in range(ids.size):
            first, rows = start_client(i, starts, ids, order, key, entropy.size, g, batch_size > 0, theta, theta0,
                                       velocity)
            for _ in range(epochs[i]):
                epoch_rows(g, rows, first, batch_size > 0)
                dense_epoch(kind, variant, X, y, theta, velocity, grad, Z, E, rows,
                            batch_size if batch_size > 0 else rows.size, lr, momentum, l2, theta0, 0.0, correction)
            for c in range(C):
                for j in range(P):
                    deltas[i, c * P + j] = theta[c, j] - theta0[c, j]

    @kernel
    def evaluate(X, y, theta, Z, E):
        """(summed loss, number correct) of theta on every row of X; the gradient argument is never touched."""
        rows = np.empty(0, dtype=np.int64)
        return range_loss_grad(kind, variant, X, y, theta, rows, is_indexed(rows), np.int64(0), X.shape[0], theta, Z,
                               E, EVALUATE)

    return Entries(full_gradient, full_gradient_threaded, batch_gradient, sgd_epoch, evaluate, cohort_sgd)


def csr_entries(kind: int, variant: int) -> Entries:
    """Entry points for CSR rows, passed as (data, indices, indptr); the same loops as the dense ones."""

    @kernel
    def full_gradient(data, indices, indptr, y, theta, grad, Z, E, W, want_loss):
        """W: the (d, 2C) working array of the single-pass walk (mpifl.kernels.csr_single_pass)."""
        grad[:] = 0
        what = GRAD | LOSS if want_loss else GRAD
        loss, _ = whole_range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, np.int64(0),
                                            indptr.shape[0] - 1, grad, Z, E, W, what)
        return loss

    @threaded_kernel
    def full_gradient_threaded(data, indices, indptr, y, theta, grad, partial, Zs, Es, Ws, want_loss):
        T = partial.shape[0]
        n = indptr.shape[0] - 1
        what = GRAD | LOSS if want_loss else GRAD
        losses = np.zeros(T)
        for t in numba.prange(T):
            partial[t] = 0
            losses[t], _ = whole_range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, t * n // T,
                                                     (t + 1) * n // T, partial[t], Zs[t], Es[t], Ws[t], what)
        return sum_partials(grad, partial, losses)

    @kernel
    def batch_gradient(data, indices, indptr, y, theta, rows, start, stop, grad, Z, E, want_loss):
        grad[:] = 0
        what = GRAD | LOSS if want_loss else GRAD
        loss, _ = range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, is_indexed(rows), start,
                                      stop, grad, Z, E, what)
        return loss

    @kernel
    def sgd_epoch(data, indices, indptr, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2, anchor,
                  mu, correction):
        """The L2 term, the objective hook and the update are dense, O(d) per step, as in the dense loop."""
        n = order.shape[0]
        indexed = is_indexed(order)
        for s in range(0, n, batch_size):
            e = min(n, s + batch_size)
            grad[:] = 0
            range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, order, indexed, s, e, grad, Z, E,
                                JUST_GRAD)
            sgd_step(grad, theta, velocity, e - s, lr, momentum, l2, anchor, mu, correction)

    @kernel
    def evaluate(data, indices, indptr, y, theta, Z, E):
        rows = np.empty(0, dtype=np.int64)
        return range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, is_indexed(rows), np.int64(0),
                                   indptr.shape[0] - 1, theta, Z, E, EVALUATE)

    return Entries(full_gradient, full_gradient_threaded, batch_gradient, sgd_epoch, evaluate)

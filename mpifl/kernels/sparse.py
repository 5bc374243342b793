"""Fused loss and gradient for rows stored as CSR (data, indices, indptr), as in LIBSVM data.

The same chunked structure as mpifl.kernels.losses: logits for a chunk of
rows, the shared link functions (residual, loss, correct), then a scatter of
the residuals into the gradient.  One pass over each row's nonzeros per
phase, no temporaries that grow with n, pure and allocation-free.
"""

from __future__ import annotations

import numba
import numpy as np

from mpifl.jit import kernel, threaded_kernel
from mpifl.kernels.drivers import add_l2_and_scale, momentum_step, objective_hook
from mpifl.kernels.flags import CORRECT, GRAD, LOSS, row_at
from mpifl.kernels.losses import link
from mpifl.kernels.rowwise import csr_row_axpy, csr_row_logits, plain_range_csr
from mpifl.kernels.prefetch import prefetch_csr_rows
from mpifl.kernels.variants import CHUNK_ROWS, FLOOR_CODE, LEAD_ROWS, POLY_EXP


@kernel
def chunk_logits_csr(data, indices, indptr, theta, rows, indexed, s, m, Z):
    """Z[i*C + c] = theta[c, :d] . x_i + theta[c, d] over the nonzeros of x_i."""
    C = theta.shape[0]
    for i in range(m):
        r = row_at(rows, indexed, s + i)
        csr_row_logits(data, indices, indptr[r], indptr[r + 1], theta, Z, i * C)


@kernel
def chunk_gradient_csr(data, indices, indptr, R, rows, indexed, s, m, grad):
    """grad[c, j] += R[i, c] x_ij over the nonzeros, and grad[c, d] += R[i, c]."""
    C = grad.shape[0]
    for i in range(m):
        r = row_at(rows, indexed, s + i)
        csr_row_axpy(data, indices, indptr[r], indptr[r + 1], R, i * C, grad)


@kernel
def range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    """As losses.range_loss_grad, for CSR rows: adds into grad, returns (summed loss, correct).

    Rows are not blocked (each row has its own nonzeros), so a variant sets
    only the chunk length, the exp and how far ahead to prefetch.
    """
    if variant == FLOOR_CODE:
        return plain_range_csr(kind, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, what)
    C = theta.shape[0]
    loss = 0.0
    correct = 0
    step = CHUNK_ROWS[variant]
    poly = POLY_EXP[variant]
    lead = LEAD_ROWS[variant]
    for s in range(start, stop, step):
        m = min(step, stop - s)
        if lead:
            prefetch_csr_rows(data, indices, indptr, rows, indexed, s + lead, step, stop)
        chunk_logits_csr(data, indices, indptr, theta, rows, indexed, s, m, Z)
        part, hits = link(kind, poly, y, rows, indexed, s, m, C, Z, E, what)
        loss += part
        correct += hits
        if what & GRAD:
            chunk_gradient_csr(data, indices, indptr, Z, rows, indexed, s, m, grad)
    return loss, correct


@kernel
def gradient_sum_csr(kind, variant, data, indices, indptr, y, theta, rows, start, stop, grad, Z, E, want_loss):
    grad[:] = 0
    what = GRAD | LOSS if want_loss else GRAD
    loss, _ = range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, True, start, stop, grad, Z,
                                   E, what)
    return loss


@kernel
def full_gradient_sum_csr(kind, variant, data, indices, indptr, y, theta, grad, Z, E, want_loss):
    grad[:] = 0
    what = GRAD | LOSS if want_loss else GRAD
    no_rows = np.empty(0, dtype=np.int64)
    n = indptr.shape[0] - 1
    loss, _ = range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, no_rows, False,
                                   0, n, grad, Z, E, what)
    return loss


@threaded_kernel
def full_gradient_sum_csr_threaded(kind, variant, data, indices, indptr, y, theta, grad, partial, Zs, Es, want_loss):
    """Fixed row ranges per thread and a fixed-order sum, as the dense threaded kernel."""
    T = partial.shape[0]
    n = indptr.shape[0] - 1
    what = GRAD | LOSS if want_loss else GRAD
    losses = np.zeros(T)
    no_rows = np.empty(0, dtype=np.int64)
    for t in numba.prange(T):
        partial[t] = 0
        losses[t], _ = range_loss_grad_csr(
            kind, variant, data, indices, indptr, y, theta, no_rows, False, t * n // T, (t + 1) * n // T,
            partial[t], Zs[t], Es[t], what,
        )
    grad[:] = 0
    total = 0.0
    for t in range(T):
        grad += partial[t]
        total += losses[t]
    return total


@kernel
def sgd_epoch_csr(kind, variant, data, indices, indptr, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2,
                  anchor, mu, correction):
    """One epoch of mini-batch SGD with momentum over CSR rows.

    The L2 term, the objective hook and the update are dense, O(d) per step,
    as in the dense path.
    """
    n = order.shape[0]
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        grad[:] = 0
        range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, order, True, s, e, grad, Z, E,
                            np.int64(GRAD))
        add_l2_and_scale(grad, theta, e - s, l2)
        objective_hook(grad, theta, anchor, mu, correction)
        momentum_step(theta, velocity, grad, lr, momentum)


@kernel
def evaluate_sums_csr(kind, variant, data, indices, indptr, y, theta, Z, E):
    no_rows = np.empty(0, dtype=np.int64)
    n = indptr.shape[0] - 1
    return range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, no_rows, False,
                               0, n, theta, Z, E, np.int64(LOSS | CORRECT))

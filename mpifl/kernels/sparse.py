"""Fused loss and gradient for rows stored as CSR (data, indices, indptr), as in LIBSVM data.

The same chunked structure as mpifl.kernels.losses: logits for a chunk of
rows, the shared link functions (residual, loss, correct), then a scatter of
the residuals into the gradient.  One pass over each row's nonzeros per
phase, no temporaries that grow with n, pure and allocation-free.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import gather_kernel, kernel
from mpifl.kernels.csr_single_pass import interleaved_range_csr
from mpifl.kernels.flags import GRAD, is_indexed, row_at
from mpifl.kernels.losses import link
from mpifl.kernels.rowwise import U1, csr_row_axpy, csr_row_logits, plain_range_csr
from mpifl.kernels.prefetch import prefetch_csr_rows
from mpifl.kernels.switch import compile_time_choice, constant
from mpifl.kernels.variants import CHUNK_ROWS, FLOOR_CODE, LEAD_ROWS, SINGLE_PASS


@gather_kernel
def chunk_logits_csr(data, indices, indptr, theta, rows, indexed, s, m, Z):
    """Z[i*C + c] = theta[c, :d] . x_i + theta[c, d] over the nonzeros of x_i."""
    C = theta.shape[0]
    for i in range(m):
        r = row_at(rows, indexed, s + i)
        csr_row_logits(data, indices, indptr[r], indptr[r + U1], theta, Z, i * C)


@kernel
def chunk_gradient_csr(data, indices, indptr, R, rows, indexed, s, m, grad):
    """grad[c, j] += R[i, c] x_ij over the nonzeros, and grad[c, d] += R[i, c]."""
    C = grad.shape[0]
    for i in range(m):
        r = row_at(rows, indexed, s + i)
        csr_row_axpy(data, indices, indptr[r], indptr[r + U1], R, i * C, grad)


@kernel
def chunked_range_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    """range_loss_grad_csr for the chunked variants."""
    C = theta.shape[0]
    loss = 0.0
    correct = 0
    step = CHUNK_ROWS[variant]
    lead = LEAD_ROWS[variant]
    for s in range(start, stop, step):
        m = min(step, stop - s)
        if lead:
            prefetch_csr_rows(data, indices, indptr, rows, indexed, s + lead, step, stop)
        chunk_logits_csr(data, indices, indptr, theta, rows, indexed, s, m, Z)
        part, hits = link(kind, variant, y, rows, indexed, s, m, C, Z, E, what)
        loss += part
        correct += hits
        if what & GRAD:
            chunk_gradient_csr(data, indices, indptr, Z, rows, indexed, s, m, grad)
    return loss, correct


def range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    """As losses.range_loss_grad, for CSR rows: adds into grad, returns (summed loss, correct).

    Rows are not blocked (each row has its own nonzeros), so a variant sets
    only the chunk length, the exp and how far ahead to prefetch.
    """
    if variant == FLOOR_CODE:
        return plain_range_csr(kind, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, what)
    return chunked_range_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what)


@compile_time_choice(range_loss_grad_csr)
def _range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    if constant(variant, "variant") == FLOOR_CODE:
        def floor(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
            return plain_range_csr(kind, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, what)
        return floor

    def chunked(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, E, what):
        return chunked_range_csr(kind, variant, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z,
                                 E, what)
    return chunked


def whole_range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, start, stop, grad, Z, E, W, what):
    """As range_loss_grad_csr over rows start .. stop-1 in storage order (a full gradient).  The single-pass
    variants walk it with the weights and gradient side by side in W (mpifl.kernels.csr_single_pass); the others
    as range_loss_grad_csr, with W unused."""
    rows = np.empty(0, dtype=np.int64)
    return range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, is_indexed(rows), start, stop,
                               grad, Z, E, what)


@compile_time_choice(whole_range_loss_grad_csr)
def _whole_range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, start, stop, grad, Z, E, W, what):
    if SINGLE_PASS[constant(variant, "variant")]:
        def interleaved(kind, variant, data, indices, indptr, y, theta, start, stop, grad, Z, E, W, what):
            return interleaved_range_csr(kind, data, indices, indptr, y, theta, start, stop, grad, Z, W, what)
        return interleaved

    def by_rows(kind, variant, data, indices, indptr, y, theta, start, stop, grad, Z, E, W, what):
        rows = np.empty(0, dtype=np.int64)
        return range_loss_grad_csr(kind, variant, data, indices, indptr, y, theta, rows, is_indexed(rows), start, stop,
                                   grad, Z, E, what)
    return by_rows

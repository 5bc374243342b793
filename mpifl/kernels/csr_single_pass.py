"""The single-pass variants' full-batch gradient on CSR rows: the weights and the gradient side by side.

A CSR row's nonzeros sit at scattered columns, so its dot product gathers
theta at those columns and its update scatters into the gradient at the same
columns: two random accesses a nonzero, into two arrays of the model's size
(378 KB each for rcv1's 47,236 features: L2, not L1).  Here both live in one
working array W of shape (d, 2C): row j holds theta[:, j] then the gradient's
column j.  The dot brings each column's line into L1, and the update of the
same row finds it there.  The row's nonzeros are read once for the dot and
once more, from L1, for the update.

Copying theta into W and the gradient out costs O(d C) a call, so this walk
serves whole ranges only (the full gradient); mini-batches and evaluation
walk as the chunked ``tuned`` variant does (mpifl.kernels.sparse), where that
copy would cost more than the batch.

Pure: no MPI, no I/O, preallocated C-contiguous arrays.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import gather_kernel, inline_kernel
from mpifl.kernels.flags import GRAD
from mpifl.kernels.prefetch import LINE_BYTES, prefetch
from mpifl.kernels.rowwise import U1, U2, U3, U4, gathered_dot, row_link

# Nonzeros ahead of the row being walked whose values and column indices are prefetched.  Measured on Zen 5 at
# rcv1's shape (1M rows x 47,236 features, 70 nonzeros a row, float64): 89.5 ms without, 80.0 / 73.0 / 69.1 /
# 72.9 ms at 64 / 128 / 256 / 512 ahead.  The hardware prefetchers lose the stream among the gathers and
# scatters at random columns; the same hint with the non-temporal locality measured the same.
LEAD_NONZEROS = 256


@inline_kernel
def _load_weights(theta, W):
    """W[j, c] = theta[c, j], W[j, C + c] = 0."""
    C = theta.shape[0]
    for j in range(W.shape[0]):
        for c in range(C):
            W[j, c] = theta[c, j]
            W[j, C + c] = 0


@inline_kernel
def _row_logits(data, indices, start, stop, theta, W, Z):
    """Z[c] = theta[c, :d] . x + theta[c, d], gathering from W's weight columns."""
    C = theta.shape[0]
    d = theta.shape[1] - 1
    for c in range(C):
        Z[c] = gathered_dot(data, indices, start, stop, W, c, theta[c, d])


@inline_kernel
def _row_update(data, indices, start, stop, Z, W, grad):
    """W's gradient columns += the residuals Z[c] times x; the bias terms go straight into grad[:, d]."""
    C = grad.shape[0]
    d = grad.shape[1] - 1
    for c in range(C):
        a = Z[c]
        at = C + c
        p = start
        while p < stop:
            W[np.uint32(indices[p]), at] += a * data[p]
            p += U1
        grad[c, d] += a


@inline_kernel
def _prefetch_ahead(data, indices, start, stop, total):
    """Prefetch the values and column indices LEAD_NONZEROS ahead of the row start .. stop-1."""
    step = np.uint64(max(LINE_BYTES // data.itemsize, 1))
    p = start + np.uint64(LEAD_NONZEROS)
    end = min(stop + np.uint64(LEAD_NONZEROS), total)
    while p < end:
        prefetch(data, p)
        prefetch(indices, p)
        p += step


@inline_kernel
def _one_output_update(data, indices, start, stop, a, W):
    """W's column 1 += a x, four nonzeros a step (in order: two of them may share a column)."""
    p = start
    while p + U4 <= stop:
        W[np.uint32(indices[p]), 1] += a * data[p]
        W[np.uint32(indices[p + U1]), 1] += a * data[p + U1]
        W[np.uint32(indices[p + U2]), 1] += a * data[p + U2]
        W[np.uint32(indices[p + U3]), 1] += a * data[p + U3]
        p += U4
    while p < stop:
        W[np.uint32(indices[p]), 1] += a * data[p]
        p += U1


@gather_kernel
def interleaved_range_csr(kind, data, indices, indptr, y, theta, start, stop, grad, Z, W, what):
    """As mpifl.kernels.sparse.range_loss_grad_csr over rows start .. stop-1 in storage order: adds into grad,
    returns (summed loss, correct).  W is the (d, 2C) working array, overwritten.  One-output models (logistic,
    linear) take a loop of their own, whose columns of W are constants."""
    C = theta.shape[0]
    d = theta.shape[1] - 1
    _load_weights(theta, W)
    loss = 0.0
    correct = 0
    total = np.uint64(indptr[indptr.shape[0] - 1])
    if C == 1:
        bias = theta[0, d]
        for r in range(start, stop):
            lo = np.uint64(indptr[r])
            hi = np.uint64(indptr[r + 1])
            _prefetch_ahead(data, indices, lo, hi, total)
            Z[0] = gathered_dot(data, indices, lo, hi, W, 0, bias)
            part, hit = row_link(kind, y[r], 1, Z, what)
            loss += part
            correct += hit
            if what & GRAD:
                _one_output_update(data, indices, lo, hi, Z[0], W)
                grad[0, d] += Z[0]
    else:
        for r in range(start, stop):
            lo = np.uint64(indptr[r])
            hi = np.uint64(indptr[r + 1])
            _prefetch_ahead(data, indices, lo, hi, total)
            _row_logits(data, indices, lo, hi, theta, W, Z)
            part, hit = row_link(kind, y[r], C, Z, what)
            loss += part
            correct += hit
            if what & GRAD:
                _row_update(data, indices, lo, hi, Z, W, grad)
    if what & GRAD:
        for c in range(C):
            at = C + c
            for j in range(d):
                grad[c, j] += W[j, at]
    return loss, correct

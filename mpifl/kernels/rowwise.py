"""The floor variant: one row at a time, its dot products, its link with libm's exp, its axpy.

This is the loop a careful user writes first, with no blocking and no
hand-made exp.  It is a variant like the others, measured against them, and
no chosen variant may be slower than it; on some CPUs (AVX2 without AVX-512)
it is the fastest.  The scalar link below is the per-row twin of
mpifl.kernels.losses' chunk links: same sums, same conventions.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import gather_kernel, inline_kernel, kernel
from mpifl.kernels.flags import CORRECT, GRAD, LOGISTIC, LOSS, SQUARED, row_at

# Unsigned steps for CSR positions (see gathered_dot).
U1, U2, U3, U4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)


@inline_kernel
def row_link(kind, label, C, Z, what):
    """Residuals of one row's logits Z[:C] in place; returns (loss, 1 if predicted right else 0)."""
    if kind == SQUARED:
        Z[0] = Z[0] - label
        r = np.float64(Z[0])
        return (0.5 * r * r if what & LOSS else 0.0), 0
    if kind == LOGISTIC:
        z = np.float64(Z[0])
        yi = np.float64(label)
        loss = math.log1p(math.exp(-abs(z))) + max(z, 0.0) - yi * z if what & LOSS else 0.0
        hit = 1 if (z > 0.0) == (yi > 0.5) else 0
        Z[0] = 1.0 / (1.0 + math.exp(-Z[0])) - label
        return loss, hit
    top = Z[0]
    arg = 0
    for c in range(1, C):
        if Z[c] > top:
            top = Z[c]
            arg = c
    k = int(label)
    loss = -np.float64(Z[k] - top) if what & LOSS else 0.0
    total = 0.0
    for c in range(C):
        Z[c] = math.exp(Z[c] - top)
        total += Z[c]
    if what & LOSS:
        loss += math.log(total)
    inv = 1.0 / total
    for c in range(C):
        Z[c] = Z[c] * inv
    Z[k] -= 1.0
    return loss, (1 if arg == k else 0)


@inline_kernel
def one_output_loss(kind, z, label):
    """One row's loss (float64) and whether it is predicted right, for the logistic and squared links."""
    zz = np.float64(z)
    yy = np.float64(label)
    if kind == LOGISTIC:
        return math.log1p(math.exp(-abs(zz))) + max(zz, 0.0) - yy * zz, 1 if (zz > 0.0) == (yy > 0.5) else 0
    return 0.5 * (zz - yy) * (zz - yy), 0


@inline_kernel
def add_row(acc, X, r, a, d):
    """acc[:d] += a x_r and acc[d] += a: one row's share of a one-output gradient."""
    for j in range(d):
        acc[j] += a * X[r, j]
    acc[d] += a


@inline_kernel
def add_into_first_row(grad, acc):
    """grad[0] += acc, once per range: the local accumulator leaves the kernel."""
    for j in range(acc.shape[0]):
        grad[0, j] += acc[j]


@kernel
def one_output_range(kind, X, y, theta, rows, indexed, start, stop, grad, what):
    """plain_range for the logistic and squared links: one weight row, so the dot and the axpy are 1-D loops
    over a local accumulator that LLVM vectorises (reassociation allowed, mpifl.jit)."""
    d = X.shape[1]
    w = theta[0]
    b = w[d]
    acc = np.zeros(d + 1, dtype=grad.dtype)
    loss = 0.0
    correct = 0
    for k in range(start, stop):
        r = row_at(rows, indexed, k)
        z = b
        for j in range(d):
            z += X[r, j] * w[j]
        if what & (LOSS | CORRECT):
            part, hit = one_output_loss(kind, z, y[r])
            loss += part
            correct += hit
        if what & GRAD:
            add_row(acc, X, r, 1.0 / (1.0 + math.exp(-z)) - y[r] if kind == LOGISTIC else z - y[r], d)
    if what & GRAD:
        add_into_first_row(grad, acc)
    return loss, correct


@kernel
def plain_range(kind, X, y, theta, rows, indexed, start, stop, grad, Z, what):
    """As losses.range_loss_grad, one dense row at a time (one-output kinds run one_output_range instead)."""
    d = X.shape[1]
    C = theta.shape[0]
    loss = 0.0
    correct = 0
    acc = np.zeros(grad.shape, dtype=grad.dtype) if what & GRAD else grad
    for k in range(start, stop):
        r = row_at(rows, indexed, k)
        for c in range(C):
            z = theta[c, d]
            for j in range(d):
                z += X[r, j] * theta[c, j]
            Z[c] = z
        part, hit = row_link(kind, y[r], C, Z, what)
        loss += part
        correct += hit
        if what & GRAD:
            for c in range(C):
                a = Z[c]
                for j in range(d):
                    acc[c, j] += a * X[r, j]
                acc[c, d] += a
    if what & GRAD:
        grad += acc
    return loss, correct


@inline_kernel
def gathered_dot(data, indices, start, stop, table, c, first):
    """first + the sum of data[p] * table[indices[p], c] for p in start .. stop-1 (unsigned positions), in four
    interleaved scalar chains (its callers compile without reassociation: mpifl.jit.GATHER_OPTIONS).

    Positions and column indices are read as unsigned integers: with signed ones, Numba wraps negative
    indices around, a compare and two selects at every access that made the gathered dot 1.4x slower."""
    z0 = 0.0 + first
    z1 = 0.0
    z2 = 0.0
    z3 = 0.0
    p = start
    while p + U4 <= stop:
        z0 += data[p] * table[np.uint32(indices[p]), c]
        z1 += data[p + U1] * table[np.uint32(indices[p + U1]), c]
        z2 += data[p + U2] * table[np.uint32(indices[p + U2]), c]
        z3 += data[p + U3] * table[np.uint32(indices[p + U3]), c]
        p += U4
    while p < stop:
        z0 += data[p] * table[np.uint32(indices[p]), c]
        p += U1
    return (z0 + z1) + (z2 + z3)


@inline_kernel
def csr_row_logits(data, indices, lo, hi, theta, Z, at):
    """Z[at + c] = theta[c, :d] . x + theta[c, d] over one CSR row's nonzeros lo .. hi-1 (gathered_dot, through
    theta's transpose: column j of it holds every output's weight j)."""
    C = theta.shape[0]
    d = theta.shape[1] - 1
    for c in range(C):
        Z[at + c] = gathered_dot(data, indices, np.uint64(lo), np.uint64(hi), theta.T, c, theta[c, d])


@inline_kernel
def csr_row_axpy(data, indices, lo, hi, R, at, grad):
    """grad[c, j] += R[at + c] x_j over one CSR row's nonzeros, and grad[c, d] += R[at + c]; indices read as
    unsigned integers (see gathered_dot)."""
    C = grad.shape[0]
    d = grad.shape[1] - 1
    start = np.uint64(lo)
    stop = np.uint64(hi)
    for c in range(C):
        a = R[at + c]
        p = start
        while p < stop:
            grad[c, np.uint32(indices[p])] += a * data[p]
            p += U1
        grad[c, d] += a


@gather_kernel
def plain_range_csr(kind, data, indices, indptr, y, theta, rows, indexed, start, stop, grad, Z, what):
    """As sparse.range_loss_grad_csr, one CSR row at a time."""
    C = theta.shape[0]
    loss = 0.0
    correct = 0
    for k in range(start, stop):
        r = row_at(rows, indexed, k)
        csr_row_logits(data, indices, indptr[r], indptr[r + U1], theta, Z, 0)
        part, hit = row_link(kind, y[r], C, Z, what)
        loss += part
        correct += hit
        if what & GRAD:
            csr_row_axpy(data, indices, indptr[r], indptr[r + U1], Z, 0, grad)
    return loss, correct

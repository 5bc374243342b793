"""Fused loss and gradient over a range of rows, for the three model kinds.

Parameters are stored as ``theta[c, :d]`` (weights of output c) and
``theta[c, d]`` (its bias).  Rows are processed in chunks in three passes that
stay in L1: logits, link (residual and, on request, loss), and the gradient
update.  There is no temporary whose size grows with n.  How many rows a chunk
holds, how rows are blocked inside it and which ``exp`` the link uses is the
kernel *variant* (mpifl.kernels.variants).  The kind and the variant are
compile-time constants (mpifl.kernels.switch): each pair compiles only its own
code paths.

All functions are pure: no MPI, no I/O, preallocated C-contiguous arrays only.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.expo import exp_block, sigmoid_residuals
from mpifl.kernels.flags import CORRECT, GRAD, LOGISTIC, LOSS, SOFTMAX, SQUARED, row_at, subtract_labels
from mpifl.kernels.rowwise import one_output_range, plain_range
from mpifl.kernels.prefetch import prefetch_rows
from mpifl.kernels.switch import compile_time_choice, constant
from mpifl.kernels.fused import fused_range
from mpifl.kernels.variants import (AXPY_ROWS, CHUNK_ROWS, DOT_ROWS, FLOOR_CODE, LEAD_ROWS, MAX_CHUNK_ROWS, POLY_EXP,
                                    SINGLE_PASS)

CHUNK = MAX_CHUNK_ROWS  # rows of scratch the callers allocate (times the outputs)


@kernel
def _logits8(X, theta, rows, indexed, s, m, Z):
    """Z[i*C + c] = theta[c, :d] . x_i + theta[c, d], eight rows at a time.

    Eight independent dot products hide the latency of each one's final
    horizontal reduction, which dominates when d is small (on AVX-512).
    """
    d = X.shape[1]
    C = theta.shape[0]
    i = 0
    while i + 8 <= m:
        r0 = row_at(rows, indexed, s + i)
        r1 = row_at(rows, indexed, s + i + 1)
        r2 = row_at(rows, indexed, s + i + 2)
        r3 = row_at(rows, indexed, s + i + 3)
        r4 = row_at(rows, indexed, s + i + 4)
        r5 = row_at(rows, indexed, s + i + 5)
        r6 = row_at(rows, indexed, s + i + 6)
        r7 = row_at(rows, indexed, s + i + 7)
        for c in range(C):
            b = theta[c, d]
            z0 = b
            z1 = b
            z2 = b
            z3 = b
            z4 = b
            z5 = b
            z6 = b
            z7 = b
            for j in range(d):
                t = theta[c, j]
                z0 += X[r0, j] * t
                z1 += X[r1, j] * t
                z2 += X[r2, j] * t
                z3 += X[r3, j] * t
                z4 += X[r4, j] * t
                z5 += X[r5, j] * t
                z6 += X[r6, j] * t
                z7 += X[r7, j] * t
            Z[i * C + c] = z0
            Z[(i + 1) * C + c] = z1
            Z[(i + 2) * C + c] = z2
            Z[(i + 3) * C + c] = z3
            Z[(i + 4) * C + c] = z4
            Z[(i + 5) * C + c] = z5
            Z[(i + 6) * C + c] = z6
            Z[(i + 7) * C + c] = z7
        i += 8
    _logits1(X, theta, rows, indexed, s, i, m, Z)


@kernel
def _logits4(X, theta, rows, indexed, s, m, Z):
    """As _logits8, four rows at a time: fewer live registers (AVX2 has 16)."""
    d = X.shape[1]
    C = theta.shape[0]
    i = 0
    while i + 4 <= m:
        r0 = row_at(rows, indexed, s + i)
        r1 = row_at(rows, indexed, s + i + 1)
        r2 = row_at(rows, indexed, s + i + 2)
        r3 = row_at(rows, indexed, s + i + 3)
        for c in range(C):
            b = theta[c, d]
            z0 = b
            z1 = b
            z2 = b
            z3 = b
            for j in range(d):
                t = theta[c, j]
                z0 += X[r0, j] * t
                z1 += X[r1, j] * t
                z2 += X[r2, j] * t
                z3 += X[r3, j] * t
            Z[i * C + c] = z0
            Z[(i + 1) * C + c] = z1
            Z[(i + 2) * C + c] = z2
            Z[(i + 3) * C + c] = z3
        i += 4
    _logits1(X, theta, rows, indexed, s, i, m, Z)


@inline_kernel
def _logits1(X, theta, rows, indexed, s, first, m, Z):
    """One row at a time, for chunk rows first..m-1."""
    d = X.shape[1]
    C = theta.shape[0]
    for i in range(first, m):
        r0 = row_at(rows, indexed, s + i)
        for c in range(C):
            z0 = theta[c, d]
            for j in range(d):
                z0 += X[r0, j] * theta[c, j]
            Z[i * C + c] = z0


def chunk_logits(variant, X, theta, rows, indexed, s, m, Z):
    """Z[i*C + c] = theta[c, :d] . x_i + theta[c, d] for the m rows from s, in the variant's row blocks."""
    block = DOT_ROWS[variant]
    if block == 1:
        return _logits1(X, theta, rows, indexed, s, 0, m, Z)
    return (_logits8 if block == 8 else _logits4)(X, theta, rows, indexed, s, m, Z)


@compile_time_choice(chunk_logits)
def _chunk_logits(variant, X, theta, rows, indexed, s, m, Z):
    block = DOT_ROWS[constant(variant, "variant")]
    if block == 1:
        return lambda variant, X, theta, rows, indexed, s, m, Z: _logits1(X, theta, rows, indexed, s, 0, m, Z)
    blocked = _logits8 if block == 8 else _logits4
    return lambda variant, X, theta, rows, indexed, s, m, Z: blocked(X, theta, rows, indexed, s, m, Z)


@kernel
def _gradient8(X, R, rows, indexed, s, m, grad):
    """grad += the chunk's residual-weighted rows, eight rows per pass over grad."""
    d = X.shape[1]
    C = grad.shape[0]
    i = 0
    while i + 8 <= m:
        r0 = row_at(rows, indexed, s + i)
        r1 = row_at(rows, indexed, s + i + 1)
        r2 = row_at(rows, indexed, s + i + 2)
        r3 = row_at(rows, indexed, s + i + 3)
        r4 = row_at(rows, indexed, s + i + 4)
        r5 = row_at(rows, indexed, s + i + 5)
        r6 = row_at(rows, indexed, s + i + 6)
        r7 = row_at(rows, indexed, s + i + 7)
        for c in range(C):
            a0 = R[i * C + c]
            a1 = R[(i + 1) * C + c]
            a2 = R[(i + 2) * C + c]
            a3 = R[(i + 3) * C + c]
            a4 = R[(i + 4) * C + c]
            a5 = R[(i + 5) * C + c]
            a6 = R[(i + 6) * C + c]
            a7 = R[(i + 7) * C + c]
            for j in range(d):
                grad[c, j] += (a0 * X[r0, j] + a1 * X[r1, j] + a2 * X[r2, j] + a3 * X[r3, j]) + (
                    a4 * X[r4, j] + a5 * X[r5, j] + a6 * X[r6, j] + a7 * X[r7, j]
                )
            grad[c, d] += (a0 + a1 + a2 + a3) + (a4 + a5 + a6 + a7)
        i += 8
    _gradient1(X, R, rows, indexed, s, i, m, grad)


@kernel
def _gradient4(X, R, rows, indexed, s, m, grad):
    """grad += the chunk's residual-weighted rows, four rows per pass over grad."""
    d = X.shape[1]
    C = grad.shape[0]
    i = 0
    while i + 4 <= m:
        r0 = row_at(rows, indexed, s + i)
        r1 = row_at(rows, indexed, s + i + 1)
        r2 = row_at(rows, indexed, s + i + 2)
        r3 = row_at(rows, indexed, s + i + 3)
        for c in range(C):
            a0 = R[i * C + c]
            a1 = R[(i + 1) * C + c]
            a2 = R[(i + 2) * C + c]
            a3 = R[(i + 3) * C + c]
            for j in range(d):
                grad[c, j] += a0 * X[r0, j] + a1 * X[r1, j] + a2 * X[r2, j] + a3 * X[r3, j]
            grad[c, d] += a0 + a1 + a2 + a3
        i += 4
    _gradient1(X, R, rows, indexed, s, i, m, grad)


@inline_kernel
def _gradient1(X, R, rows, indexed, s, first, m, grad):
    """grad[c, :d] += R[i, c] x_i and grad[c, d] += R[i, c], for chunk rows first..m-1."""
    d = X.shape[1]
    C = grad.shape[0]
    for i in range(first, m):
        r0 = row_at(rows, indexed, s + i)
        for c in range(C):
            a0 = R[i * C + c]
            for j in range(d):
                grad[c, j] += a0 * X[r0, j]
            grad[c, d] += a0


def chunk_gradient(variant, X, R, rows, indexed, s, m, grad):
    """grad[c, :d] += sum_i R[i, c] x_i and grad[c, d] += sum_i R[i, c], in the variant's row blocks."""
    block = AXPY_ROWS[variant]
    if block == 1:
        return _gradient1(X, R, rows, indexed, s, 0, m, grad)
    return (_gradient8 if block == 8 else _gradient4)(X, R, rows, indexed, s, m, grad)


@compile_time_choice(chunk_gradient)
def _chunk_gradient(variant, X, R, rows, indexed, s, m, grad):
    block = AXPY_ROWS[constant(variant, "variant")]
    if block == 1:
        return lambda variant, X, R, rows, indexed, s, m, grad: _gradient1(X, R, rows, indexed, s, 0, m, grad)
    blocked = _gradient8 if block == 8 else _gradient4
    return lambda variant, X, R, rows, indexed, s, m, grad: blocked(X, R, rows, indexed, s, m, grad)


@kernel
def _libm_exp(E, m):
    """E[i] = exp(E[i]) for i < m with libm's scalar exp."""
    for i in range(m):
        E[i] = math.exp(E[i])


def exp_values(variant, E, m):
    """E[i] = exp(E[i]) for i < m, with the polynomial exp or libm's, as the variant says."""
    return exp_block(E, E, m) if POLY_EXP[variant] else _libm_exp(E, m)


@compile_time_choice(exp_values)
def _exp_values(variant, E, m):
    if POLY_EXP[constant(variant, "variant")]:
        return lambda variant, E, m: exp_block(E, E, m)
    return lambda variant, E, m: _libm_exp(E, m)


@kernel
def _squared_link(variant, y, rows, indexed, s, m, C, Z, E, what):
    """Residual z - y in place; returns (0.5 * sum r^2, 0)."""
    loss = 0.0
    subtract_labels(Z, y, rows, indexed, s, m)
    if what & LOSS:
        for i in range(m):
            loss += 0.5 * np.float64(Z[i]) * np.float64(Z[i])
    return loss, 0


@kernel
def _libm_sigmoid_residuals(Z, y, rows, indexed, s, m, E):
    """Z[i] = 1 / (1 + exp(-Z[i])) - y[row i] with libm's exp (E is scratch)."""
    for i in range(m):
        E[i] = -Z[i]
    _libm_exp(E, m)
    for i in range(m):
        Z[i] = 1.0 / (1.0 + E[i])
    subtract_labels(Z, y, rows, indexed, s, m)


def sigmoid_link(variant, Z, y, rows, indexed, s, m, E):
    """The logistic residuals, with the polynomial exp or libm's, as the variant says."""
    if POLY_EXP[variant]:
        return sigmoid_residuals(Z, y, rows, indexed, s, m)
    return _libm_sigmoid_residuals(Z, y, rows, indexed, s, m, E)


@compile_time_choice(sigmoid_link)
def _sigmoid_link(variant, Z, y, rows, indexed, s, m, E):
    if POLY_EXP[constant(variant, "variant")]:
        return lambda variant, Z, y, rows, indexed, s, m, E: sigmoid_residuals(Z, y, rows, indexed, s, m)
    return lambda variant, Z, y, rows, indexed, s, m, E: _libm_sigmoid_residuals(Z, y, rows, indexed, s, m, E)


@kernel
def _logistic_link(variant, y, rows, indexed, s, m, C, Z, E, what):
    """Residual sigmoid(z) - y in place; returns (sum of log-losses, correct)."""
    loss = 0.0
    correct = 0
    if what & (LOSS | CORRECT):
        for i in range(m):
            z = np.float64(Z[i])
            yi = np.float64(y[row_at(rows, indexed, s + i)])
            if what & LOSS:
                loss += math.log1p(math.exp(-abs(z))) + max(z, 0.0) - yi * z
            if (z > 0.0) == (yi > 0.5):
                correct += 1
    sigmoid_link(variant, Z, y, rows, indexed, s, m, E)
    return loss, correct


@kernel
def _softmax_link(variant, y, rows, indexed, s, m, C, Z, E, what):
    """Residual softmax(z) - onehot(y) in place; returns (cross-entropy sum, correct)."""
    loss = 0.0
    correct = 0
    for i in range(m):
        top = Z[i * C]
        arg = 0
        for c in range(1, C):
            if Z[i * C + c] > top:
                top = Z[i * C + c]
                arg = c
        label = int(y[row_at(rows, indexed, s + i)])
        if arg == label:
            correct += 1
        for c in range(C):
            E[i * C + c] = Z[i * C + c] - top
        if what & LOSS:
            # E holds z - max before exponentiation; keep the label's term.
            loss -= np.float64(E[i * C + label])
    exp_values(variant, E, m * C)
    for i in range(m):
        total = 0.0
        for c in range(C):
            total += E[i * C + c]
        if what & LOSS:
            loss += math.log(total)
        inv = 1.0 / total
        label = int(y[row_at(rows, indexed, s + i)])
        for c in range(C):
            Z[i * C + c] = E[i * C + c] * inv
        Z[i * C + label] -= 1.0
    return loss, correct


_LINKS = {SQUARED: _squared_link, LOGISTIC: _logistic_link, SOFTMAX: _softmax_link}


def link(kind, variant, y, rows, indexed, s, m, C, Z, E, what):
    """The model kind's link on a chunk of logits: residuals in Z; returns (summed loss, correct)."""
    return _LINKS[kind](variant, y, rows, indexed, s, m, C, Z, E, what)


@compile_time_choice(link)
def _link(kind, variant, y, rows, indexed, s, m, C, Z, E, what):
    chosen = _LINKS[constant(kind, "kind")]
    return lambda kind, variant, y, rows, indexed, s, m, C, Z, E, what: chosen(
        variant, y, rows, indexed, s, m, C, Z, E, what)


@kernel
def chunked_range(kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    """range_loss_grad for the chunked variants: logits, link and gradient chunk by chunk."""
    C = theta.shape[0]
    loss = 0.0
    correct = 0
    # A local accumulator: LLVM knows it aliases neither X nor theta, so the
    # gradient loop vectorises without runtime overlap checks (1.2x faster).
    acc = np.zeros(grad.shape, dtype=grad.dtype) if what & GRAD else grad
    step = CHUNK_ROWS[variant]
    lead = LEAD_ROWS[variant]
    part_rows = max(step // 4, 1)  # prefetches go out a quarter chunk per phase boundary
    for s in range(start, stop, step):
        m = min(step, stop - s)
        if lead:
            prefetch_rows(X, rows, indexed, s + lead, part_rows, stop)
        chunk_logits(variant, X, theta, rows, indexed, s, m, Z)
        if lead:
            prefetch_rows(X, rows, indexed, s + lead + part_rows, part_rows, stop)
        part, hits = link(kind, variant, y, rows, indexed, s, m, C, Z, E, what)
        loss += part
        correct += hits
        if lead:
            prefetch_rows(X, rows, indexed, s + lead + 2 * part_rows, part_rows, stop)
        if what & GRAD:
            chunk_gradient(variant, X, Z, rows, indexed, s, m, acc)
        if lead:
            prefetch_rows(X, rows, indexed, s + lead + 3 * part_rows, step - 3 * part_rows, stop)
    if what & GRAD:
        grad += acc
    return loss, correct


def range_loss_grad(kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    """Accumulate over rows [start, stop) (through ``rows`` when indexed), walked as ``variant`` says.

    Adds the summed data gradient into ``grad`` when ``what & GRAD`` and returns
    (summed loss, number correct).  Means and L2 are applied by the callers.
    """
    if variant == FLOOR_CODE and kind != SOFTMAX:
        return one_output_range(kind, X, y, theta, rows, indexed, start, stop, grad, what)
    if variant == FLOOR_CODE:
        return plain_range(kind, X, y, theta, rows, indexed, start, stop, grad, Z, what)
    if SINGLE_PASS[variant] and kind != SOFTMAX:
        return fused_range(kind, POLY_EXP[variant], X, y, theta, rows, indexed, start, stop, grad, what)
    return chunked_range(kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what)


@compile_time_choice(range_loss_grad)
def _range_loss_grad(kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what):
    code = constant(variant, "variant")
    if code == FLOOR_CODE and constant(kind, "kind") != SOFTMAX:
        return lambda kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what: one_output_range(
            kind, X, y, theta, rows, indexed, start, stop, grad, what)
    if code == FLOOR_CODE:
        return lambda kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what: plain_range(
            kind, X, y, theta, rows, indexed, start, stop, grad, Z, what)
    if SINGLE_PASS[code] and constant(kind, "kind") != SOFTMAX:
        poly = POLY_EXP[code]
        return lambda kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what: fused_range(
            kind, poly, X, y, theta, rows, indexed, start, stop, grad, what)
    return lambda kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what: chunked_range(
        kind, variant, X, y, theta, rows, indexed, start, stop, grad, Z, E, what)

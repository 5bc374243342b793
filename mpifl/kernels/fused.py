"""The single-pass variant for one-output models (logistic and squared loss) on dense rows.

The chunked variants (mpifl.kernels.losses) read a chunk of rows for the
logits, run the link over the chunk, then read the rows again for the
gradient.  Here a block of rows (eight in float32, two in float64) is
loaded once: their dot products run interleaved, the link turns the logits
into residuals, and the residual-weighted rows are added into the gradient
while the rows are still in L1.  The weights are one row of theta, the gradient a
local accumulator (so LLVM knows it aliases nothing), and the project's
reassociation and contraction flags (mpifl.jit) let LLVM vectorise the dots
and the axpy; no-NaN and no-Inf are not assumed, so a diverging run still
shows its NaN or Inf.  Softmax models have several outputs per row and walk
as the chunked ``tuned`` variant does.

Pure: no MPI, no I/O, preallocated C-contiguous arrays.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.expo import exp32, exp64
from mpifl.kernels.flags import CORRECT, GRAD, LOGISTIC, LOSS, row_at
from mpifl.kernels.rowwise import add_into_first_row, one_output_loss, one_output_range
from mpifl.kernels.switch import compile_time_choice, constant


@inline_kernel
def _residual(kind, poly, z, label, X):
    """sigmoid(z) - y for the logistic link, z - y for squared loss, in X's precision (the polynomial exp or
    libm's, as the variant says)."""
    if kind != LOGISTIC:
        return z - label
    if X.itemsize == 4:
        one = np.float32(1.0)
        return one / (one + (exp32(-z) if poly else np.float32(math.exp(-z)))) - label
    return 1.0 / (1.0 + (exp64(-z) if poly else math.exp(-z))) - label


BLOCK = 8  # rows per block in float32 (_axpy8 names eight rows): as many as the vector registers hold without spilling
# float64 walks rows in pairs (_pair_range): measured on Zen 5 at 1M x 32, pairs with the polynomial exp took
# 8.6 ms against 9.7 ms one row at a time and 11.1 ms in blocks of four (whose dots and residuals went through
# memory), and 17 ms in whole blocks of eight (their axpy does not fit the registers in float64); the pair's two
# dots, links and axpys stay in registers.


@inline_kernel
def _axpy8(X, acc, d, rows, indexed, k, a):
    """acc[:d] += the eight rows from k (through ``rows`` when indexed) weighted by their residuals a, and
    acc[d] += the residuals: one pass over acc.  The rows are named here, not read from an array, so LLVM sees
    consecutive rows as consecutive addresses."""
    r0, r1, r2, r3 = (row_at(rows, indexed, k), row_at(rows, indexed, k + 1), row_at(rows, indexed, k + 2),
                      row_at(rows, indexed, k + 3))
    r4, r5, r6, r7 = (row_at(rows, indexed, k + 4), row_at(rows, indexed, k + 5), row_at(rows, indexed, k + 6),
                      row_at(rows, indexed, k + 7))
    a0, a1, a2, a3, a4, a5, a6, a7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    for j in range(d):
        acc[j] += ((a0 * X[r0, j] + a1 * X[r1, j]) + (a2 * X[r2, j] + a3 * X[r3, j])) + (
            (a4 * X[r4, j] + a5 * X[r5, j]) + (a6 * X[r6, j] + a7 * X[r7, j]))
    acc[d] += ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


def _blocked(block: int, kind: int, poly: bool):
    """The single pass with ``block`` rows a block, for one model kind and exp: constants of the compiled loop."""

    @kernel
    def blocked_range(X, y, theta, rows, indexed, start, stop, grad, what):
        d = X.shape[1]
        w = theta[0]
        b = w[d]
        acc = np.zeros(d + 1, dtype=grad.dtype)
        z = np.empty(block, dtype=X.dtype)
        at = np.empty(block, dtype=np.uint64)  # unsigned row indices: see flags.row_at
        one = np.float32(1.0)
        loss = 0.0
        correct = 0
        k = start
        # Whole blocks only, so that every loop over the block has a constant trip count: LLVM unrolls them and
        # keeps the block's logits in registers (a trip count of min(block, rows left) cost 22% at 1M x 32).
        while k + block <= stop:
            for t in range(block):
                at[t] = row_at(rows, indexed, k + t)
            for t in range(block):
                s = b
                r = at[t]
                for j in range(d):
                    s += X[r, j] * w[j]
                z[t] = s
            if what & (LOSS | CORRECT):
                for t in range(block):
                    part, hit = one_output_loss(kind, z[t], y[at[t]])
                    loss += part
                    correct += hit
            if what & GRAD:
                if poly and kind == LOGISTIC:  # the block's sigmoids in one loop, then the labels
                    for t in range(block):
                        z[t] = one / (one + exp32(-z[t]))
                    for t in range(block):
                        z[t] -= y[at[t]]
                else:
                    for t in range(block):
                        z[t] = _residual(kind, poly, z[t], y[at[t]], X)
                _axpy8(X, acc, d, rows, indexed, k, z)
            k += block
        if what & GRAD:
            add_into_first_row(grad, acc)
        if k < stop:  # the last rows, fewer than a block, as the floor walks them (it adds into grad itself)
            part, hit = one_output_range(kind, X, y, theta, rows, indexed, k, stop, grad, what)
            loss += part
            correct += hit
        return loss, correct

    return blocked_range


@inline_kernel
def _dots(X, w, b, r0, r1):
    """The logits of rows r0 and r1, their dots interleaved."""
    z0 = b
    z1 = b
    for j in range(X.shape[1]):
        z0 += X[r0, j] * w[j]
        z1 += X[r1, j] * w[j]
    return z0, z1


@inline_kernel
def _pair_gradient(kind, poly, X, y, w, b, acc, r0, r1):
    """Rows r0 and r1 into acc in one pass; returns the sum of their residuals (the bias gradient)."""
    z0, z1 = _dots(X, w, b, r0, r1)
    a0 = _residual(kind, poly, z0, y[r0], X)
    a1 = _residual(kind, poly, z1, y[r1], X)
    for j in range(X.shape[1]):
        acc[j] += a0 * X[r0, j] + a1 * X[r1, j]
    return a0 + a1


def _pairs(kind: int, poly: bool):
    """The single pass two rows at a time, for one model kind and exp (constants of the compiled loop)."""

    @kernel
    def pair_range(X, y, theta, rows, indexed, start, stop, grad, what):
        """The single pass two rows at a time, every value of the pair a named scalar (so in registers).

        The training case (the gradient alone) has its loop written twice, for
        storage order and for a shuffled order, so that LLVM sees consecutive rows
        as consecutive addresses in the first and no flag is tested per row: each
        test in the loop cost a third of its speed (Zen 5, 1M x 32).  Row
        indices are unsigned (see flags.row_at): with signed ones this loop was
        1.3x slower.  The accumulator is local, as in the blocked walk.
        """
        d = X.shape[1]
        w = theta[0]
        b = w[d]
        acc = np.zeros(d + 1, dtype=grad.dtype)
        bias = 0.0
        loss = 0.0
        correct = 0
        k = start
        if what == GRAD and indexed:
            while k + 1 < stop:
                bias += _pair_gradient(kind, poly, X, y, w, b, acc, np.uint64(rows[k]), np.uint64(rows[k + 1]))
                k += 2
        elif what == GRAD:
            while k + 1 < stop:
                bias += _pair_gradient(kind, poly, X, y, w, b, acc, np.uint64(k), np.uint64(k + 1))
                k += 2
        else:
            while k + 1 < stop:
                r0 = row_at(rows, indexed, k)
                r1 = row_at(rows, indexed, k + 1)
                z0, z1 = _dots(X, w, b, r0, r1)
                if what & (LOSS | CORRECT):
                    part, hit = one_output_loss(kind, z0, y[r0])
                    part1, hit1 = one_output_loss(kind, z1, y[r1])
                    loss += part + part1
                    correct += hit + hit1
                if what & GRAD:
                    a0 = _residual(kind, poly, z0, y[r0], X)
                    a1 = _residual(kind, poly, z1, y[r1], X)
                    for j in range(d):
                        acc[j] += a0 * X[r0, j] + a1 * X[r1, j]
                    bias += a0 + a1
                k += 2
        if what & GRAD:
            acc[d] = bias
            add_into_first_row(grad, acc)
        if k < stop:  # the odd row out, as the floor walks it (it adds into grad itself)
            part, hit = one_output_range(kind, X, y, theta, rows, indexed, k, stop, grad, what)
            loss += part
            correct += hit
        return loss, correct

    return pair_range


_WALKS: dict[tuple[int, int, int, bool], object] = {}  # (itemsize, kind, block, poly) -> its compiled walk


def walks() -> dict:
    """The walks made so far in this process, by name (for tests that list what a job compiled)."""
    names = {1: "_pair_range", BLOCK: "_range8"}
    return {f"{names[block]}[kind {kind}, {'poly' if poly else 'libm'} exp]": walk
            for (_, kind, block, poly), walk in _WALKS.items()}


def walk_for(itemsize: int, kind: int, poly: bool):
    """The single pass for one precision, model kind and exp: blocks of BLOCK rows in float32, pairs in float64.
    The kind and the exp are constants of the loop, so no row tests them (a per-row test of either cost 5%)."""
    block = BLOCK if itemsize == 4 else 1
    key = (itemsize, int(kind), block, bool(poly))
    if key not in _WALKS:
        _WALKS[key] = _blocked(BLOCK, int(kind), bool(poly)) if block == BLOCK else _pairs(int(kind), bool(poly))
    return _WALKS[key]


def fused_range(kind, poly, X, y, theta, rows, indexed, start, stop, grad, what):
    """As losses.range_loss_grad for one output: adds the summed data gradient into grad[0] when
    ``what & GRAD``; returns (summed loss, correct).  Blocks of BLOCK rows in float32, pairs in float64."""
    walk = walk_for(X.dtype.itemsize, kind, poly)
    return walk(X, y, theta, rows, indexed, start, stop, grad, what)


@compile_time_choice(fused_range)
def _fused_range(kind, poly, X, y, theta, rows, indexed, start, stop, grad, what):
    # chosen while typing: a job compiles the one walk of its precision, kind and exp
    walk = walk_for(X.dtype.bitwidth // 8, constant(kind, "kind"), constant(poly, "poly"))
    return lambda kind, poly, X, y, theta, rows, indexed, start, stop, grad, what: walk(
        X, y, theta, rows, indexed, start, stop, grad, what)

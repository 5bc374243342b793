"""A multilayer perceptron's fused loss, gradient and SGD step on one flat parameter vector.

Layer l maps ``widths[l]`` inputs to ``widths[l + 1]`` outputs.  Its weights
are stored input-major, ``W[k, j]`` from input k to unit j, so that the
forward product and both backward products run over contiguous rows; its
biases follow.  Every layer is a view into theta (MlpLayout), and the
collectives send theta as it is.

The products are BLAS GEMMs through Numba's ``np.dot`` into preallocated
buffers; everything else (bias, activation, its derivative, the output link
shared with the linear kernels, the update) are loops in the same compiled
call, so a mini-batch step is one Python call with no allocation.

All functions are pure: no MPI, no I/O, preallocated C-contiguous arrays only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import types

from mpifl.jit import inline_kernel, kernel, threaded_kernel
from mpifl.kernels.drivers import sum_partials
from mpifl.kernels.cohorts import client_key, epoch_rows, start_client
from mpifl.kernels.flags import CORRECT, GRAD, LOSS, is_indexed
from mpifl.kernels.losses import link
from mpifl.kernels.switch import compile_time_choice
from mpifl.layout import MlpLayout

RELU, TANH = 0, 1
ACTIVATIONS = {"relu": RELU, "tanh": TANH}
CHUNK_ROWS = 256  # rows per forward/backward pass of a full-batch gradient or an evaluation


@dataclass
class MlpBuffers:
    """Scratch for batches of up to ``rows`` rows: activations of every layer, two delta panels, one
    gradient panel, allocated once per model and reused by every call."""

    A: np.ndarray  # rows x (sum of widths): the input rows, then each layer's output
    D: np.ndarray  # 2 x rows x (widest layer): the delta being propagated, and the next one
    G: np.ndarray  # the largest weight matrix: a product to add into an accumulated gradient
    E: np.ndarray  # rows x outputs: the output link's exp scratch

    @classmethod
    def allocate(cls, layout: MlpLayout, rows: int, dtype, sparse: bool = False) -> MlpBuffers:
        """Sparse inputs stay in their CSR arrays: no input panel, and the first layer's weight gradient
        needs no scratch.  Deltas are never as wide as the input."""
        widths = layout.widths
        pairs = list(zip(widths[:-1], widths[1:]))
        products = [n * m for n, m in (pairs[1:] if sparse else pairs)]
        panels = sum(widths[1:]) + (0 if sparse else widths[0])
        return cls(np.empty(rows * panels, dtype=dtype), np.empty(2 * rows * max(widths[1:]), dtype=dtype),
                   np.empty(max(products, default=1), dtype=dtype), np.empty(rows * widths[-1], dtype=dtype))


@inline_kernel
def panel(widths, first, m, layer):
    """Where layer ``layer``'s activations start in A: A_0 holds the input rows (``first`` wide: the
    features for dense rows, 0 for CSR rows, which stay in their arrays), then each layer's m x widths[l].
    Computed, not stored, so that no call allocates."""
    at = m * first if layer > 0 else 0
    for below in range(1, layer):
        at += m * widths[below]
    return at


def input_width(X, d):
    """The width of the input panel in A: d for dense rows, 0 for CSR rows."""
    raise TypeError("input_width runs inside compiled kernels only")


@compile_time_choice(input_width)
def _input_width(X, d):
    if isinstance(X, types.BaseTuple):
        return lambda X, d: 0
    return lambda X, d: d


def input_product(X, rows, indexed, s, m, inputs, W, Z):
    """Z = (rows s .. s+m-1 of X) @ W, the first layer's product.  Dense rows are gathered into ``inputs``
    (kept for the backward pass) and multiplied by BLAS; CSR rows, X = (data, indices, indptr), add their
    nonzeros' weight rows.  Which one is compiled follows X's type."""
    raise TypeError("input_product runs inside compiled kernels only")


@compile_time_choice(input_product)
def _input_product(X, rows, indexed, s, m, inputs, W, Z):
    if isinstance(X, types.BaseTuple):
        def sparse_rows(X, rows, indexed, s, m, inputs, W, Z):
            data, indices, indptr = X
            w = Z.shape[1]
            for i in range(m):
                r = rows[s + i] if indexed else s + i
                for j in range(w):
                    Z[i, j] = 0.0
                for p in range(indptr[r], indptr[r + 1]):
                    v = data[p]
                    k = indices[p]
                    for j in range(w):
                        Z[i, j] += v * W[k, j]
        return sparse_rows

    def dense_rows(X, rows, indexed, s, m, inputs, W, Z):
        d = inputs.shape[1]
        for i in range(m):
            r = rows[s + i] if indexed else s + i
            for j in range(d):
                inputs[i, j] = X[r, j]
        np.dot(inputs, W, Z)
    return dense_rows


def input_gradient(X, rows, indexed, s, m, inputs, R, gW, accumulate, G):
    """The first layer's weight gradient (rows of X)^T R, into gW (added when ``accumulate``); by X's type."""
    raise TypeError("input_gradient runs inside compiled kernels only")


@compile_time_choice(input_gradient)
def _input_gradient(X, rows, indexed, s, m, inputs, R, gW, accumulate, G):
    if isinstance(X, types.BaseTuple):
        def sparse_rows(X, rows, indexed, s, m, inputs, R, gW, accumulate, G):
            data, indices, indptr = X
            w = gW.shape[1]
            if not accumulate:
                gW[:, :] = 0
            for i in range(m):
                r = rows[s + i] if indexed else s + i
                for p in range(indptr[r], indptr[r + 1]):
                    v = data[p]
                    k = indices[p]
                    for j in range(w):
                        gW[k, j] += v * R[i, j]
        return sparse_rows

    def dense_rows(X, rows, indexed, s, m, inputs, R, gW, accumulate, G):
        _weight_gradient(inputs, R, gW, accumulate, G)
    return dense_rows


def n_rows(X):
    """Rows of a dense X or of a CSR triple (data, indices, indptr)."""
    raise TypeError("n_rows runs inside compiled kernels only")


@compile_time_choice(n_rows)
def _n_rows(X):
    if isinstance(X, types.BaseTuple):
        return lambda X: X[2].shape[0] - 1
    return lambda X: X.shape[0]


@inline_kernel
def _weight_gradient(H, R, gW, accumulate, G):
    """gW = H^T R, or gW += H^T R through the scratch G."""
    n, w = gW.shape
    if accumulate:
        product = G[:n * w].reshape((n, w))
        np.dot(H.T, R, product)
        for k in range(n):
            for j in range(w):
                gW[k, j] += product[k, j]
    else:
        np.dot(H.T, R, gW)


@kernel
def forward(theta, offsets, widths, activation, X, rows, indexed, s, m, A):
    """The outputs' logits for rows s .. s+m-1 (through ``rows`` when indexed), into the last panel of A.

    Hidden layers keep their activations in A for the backward pass.
    """
    L = offsets.shape[0]
    first = input_width(X, widths[0])
    here = 0
    for layer in range(L):
        n, w = widths[layer], widths[layer + 1]
        k = first if layer == 0 else n
        H = A[here:here + m * k].reshape((m, k))
        W = theta[offsets[layer, 0]:offsets[layer, 0] + n * w].reshape((n, w))
        b = theta[offsets[layer, 1]:offsets[layer, 1] + w]
        here += m * k
        Z = A[here:here + m * w].reshape((m, w))
        if layer == 0:
            input_product(X, rows, indexed, s, m, H, W, Z)
        else:
            np.dot(H, W, Z)
        hidden = layer < L - 1
        for i in range(m):
            for j in range(w):
                Z[i, j] += b[j]
        if hidden and activation == RELU:
            for i in range(m):
                for j in range(w):
                    Z[i, j] = max(Z[i, j], 0.0)
        elif hidden:
            for i in range(m):
                for j in range(w):
                    Z[i, j] = math.tanh(Z[i, j])


@kernel
def backward(theta, offsets, widths, activation, X, rows, indexed, s, A, m, D, G, grad, accumulate):
    """Summed gradient of the batch's loss from the output residuals (in D's first panel) into grad.

    With ``accumulate`` each product is added to grad (a full-batch sum over
    chunks); otherwise it overwrites grad (one mini-batch step).  The first
    layer's weight gradient reads the rows of X as forward did.
    """
    L = offsets.shape[0]
    first = input_width(X, widths[0])
    half = D.shape[0] // 2
    current, spare = 0, half
    for layer in range(L - 1, -1, -1):
        n, w = widths[layer], widths[layer + 1]
        at = panel(widths, first, m, layer)
        k = first if layer == 0 else n
        H = A[at:at + m * k].reshape((m, k))
        R = D[current:current + m * w].reshape((m, w))
        gW = grad[offsets[layer, 0]:offsets[layer, 0] + n * w].reshape((n, w))
        gb = grad[offsets[layer, 1]:offsets[layer, 1] + w]
        if layer == 0:
            input_gradient(X, rows, indexed, s, m, H, R, gW, accumulate, G)
        else:
            _weight_gradient(H, R, gW, accumulate, G)
        if not accumulate:
            gb[:] = 0
        for i in range(m):
            for j in range(w):
                gb[j] += R[i, j]
        if layer == 0:
            break
        W = theta[offsets[layer, 0]:offsets[layer, 0] + n * w].reshape((n, w))
        below = D[spare:spare + m * n].reshape((m, n))
        np.dot(R, W.T, below)
        if activation == RELU:
            for i in range(m):
                for k in range(n):
                    if H[i, k] <= 0.0:
                        below[i, k] = 0.0
        else:
            for i in range(m):
                for k in range(n):
                    below[i, k] *= 1.0 - H[i, k] * H[i, k]
        current, spare = spare, current


@kernel
def flat_sgd_step(grad, theta, velocity, count, lr, momentum, l2, offsets, anchor, mu, correction, lo, hi):
    """Summed gradient -> mean + l2 on the weights + the objective hook; then heavy-ball SGD on theta[lo:hi].

    The hook is the round protocol's (anchor, mu, correction), as in
    drivers.objective_hook: mu = 0 and an empty correction skip it.  Values
    outside [lo, hi) are frozen: neither they nor their velocity change
    (FedRep trains its head and its body in turn).
    """
    inv = theta.dtype.type(1.0 / count if count > 0 else 0.0)  # in the parameters' precision: twice the lanes
    if count != 1:
        for i in range(lo, hi):
            grad[i] *= inv
    if l2 != 0.0:
        for layer in range(offsets.shape[0]):
            for i in range(max(lo, offsets[layer, 0]), min(hi, offsets[layer, 1])):
                grad[i] += l2 * theta[i]
    if mu != 0.0:
        for i in range(lo, hi):
            grad[i] += mu * (theta[i] - anchor[i])
    if correction.size != 0:
        for i in range(lo, hi):
            grad[i] += correction[i]
    if momentum != 0.0:
        for i in range(lo, hi):
            velocity[i] = momentum * velocity[i] + grad[i]
            theta[i] -= lr * velocity[i]
    else:
        rate = theta.dtype.type(lr)
        for i in range(lo, hi):
            theta[i] -= rate * grad[i]


@kernel
def finish_flat_gradient(grad, theta, count, l2, offsets):
    """Summed data gradient -> mean gradient + l2 * weights (not biases), in place."""
    inv = 1.0 / count if count > 0 else 0.0
    for i in range(grad.shape[0]):
        grad[i] *= inv
    if l2 != 0.0:
        for layer in range(offsets.shape[0]):
            for i in range(offsets[layer, 0], offsets[layer, 1]):
                grad[i] += l2 * theta[i]


@kernel
def weight_penalty(theta, offsets, l2):
    """0.5 * l2 * (sum of squared weights), the biases excluded."""
    total = 0.0
    for layer in range(offsets.shape[0]):
        for i in range(offsets[layer, 0], offsets[layer, 1]):
            total += np.float64(theta[i]) * np.float64(theta[i])
    return 0.5 * l2 * total


WHAT_STEP = np.int64(GRAD)
WHAT_EVALUATE = np.int64(LOSS | CORRECT)


@inline_kernel
def mlp_epoch(kind, variant, activation, theta, offsets, widths, X, y, velocity, grad, A, D, G, E, order, batch_size,
              lr, momentum, l2, anchor, mu, correction, lo, hi):
    """One epoch of mini-batch SGD in the given row order: one forward, backward and update per batch; only
    theta[lo:hi] is trained."""
    n = order.shape[0]
    C = widths[widths.shape[0] - 1]
    indexed = is_indexed(order)
    for s in range(0, n, batch_size):
        m = min(n, s + batch_size) - s
        # residuals scaled by 1/m: backward then yields the mean gradient, and the step needs no pass to scale it
        _residuals(kind, variant, activation, theta, offsets, widths, X, y, order, indexed, s, m, A, D, E, C,
                   WHAT_STEP, 1.0 / m)
        backward(theta, offsets, widths, activation, X, order, indexed, s, A, m, D, G, grad, False)
        flat_sgd_step(grad, theta, velocity, 1, lr, momentum, l2, offsets, anchor, mu, correction, lo, hi)


def mlp_entries(kind: int, activation: int, variant: int):
    """The entry points of one output kind, activation and variant (closed over, so compile-time constants).

    The output link is the linear kernels' (losses.link): the same losses,
    residuals and accuracy conventions for the MLP's outputs as for a
    linear model's logits.  Returns (sgd_epoch, full_gradient, full_gradient_threaded, batch_gradient, evaluate,
    cohort_sgd).
    """

    @kernel
    def sgd_epoch(theta, offsets, widths, X, y, velocity, grad, A, D, G, E, order, batch_size, lr, momentum, l2,
                  anchor, mu, correction, lo, hi):
        """One epoch of mini-batch SGD in the given row order: one forward, backward and update per batch; only
        theta[lo:hi] is trained."""
        mlp_epoch(kind, variant, activation, theta, offsets, widths, X, y, velocity, grad, A, D, G, E, order,
                  batch_size, lr, momentum, l2, anchor, mu, correction, lo, hi)

    @kernel
    def cohort_sgd(theta0, offsets, widths, X, y, starts, entropy, ids, epochs, theta, velocity, grad, A, D, G, E,
                   order, deltas, batch_size, lr, momentum, l2, correction):
        """Every client of a cohort trained from theta0 in one call, as mpifl.kernels.entries' cohort_sgd does for
        the linear kinds (the same streams, rows and deltas), in sgd_epoch's own loop."""
        key, g = client_key(entropy)
        for i in range(ids.size):
            first, rows = start_client(i, starts, ids, order, key, entropy.size, g, batch_size > 0, theta, theta0,
                                       velocity)
            for _ in range(epochs[i]):
                epoch_rows(g, rows, first, batch_size > 0)
                mlp_epoch(kind, variant, activation, theta, offsets, widths, X, y, velocity, grad, A, D, G, E, rows,
                          batch_size if batch_size > 0 else rows.size, lr, momentum, l2, theta0, 0.0, correction, 0,
                          theta.size)
            for j in range(theta.size):
                deltas[i, j] = theta[j] - theta0[j]

    @kernel
    def full_gradient(theta, offsets, widths, X, y, grad, A, D, G, E, want_loss):
        """Summed gradient over every row of X, chunk by chunk; returns the summed loss (0 unless asked)."""
        grad[:] = 0
        what = GRAD | LOSS if want_loss else GRAD
        return _range_gradient(kind, variant, activation, theta, offsets, widths, X, y, 0, n_rows(X), A, D, G, E,
                               grad, what)

    @threaded_kernel
    def full_gradient_threaded(theta, offsets, widths, X, y, grad, partial, As, Ds, Gs, Es, want_loss):
        """As full_gradient, over partial.shape[0] fixed row ranges, one per thread, each with its own
        buffers and partial gradient; the partials are summed in range order (drivers.sum_partials), so
        the result depends on the thread count, never on scheduling."""
        T = partial.shape[0]
        n = n_rows(X)
        what = GRAD | LOSS if want_loss else GRAD
        losses = np.zeros(T)
        for t in numba.prange(T):
            partial[t, :] = 0
            losses[t] = _range_gradient(kind, variant, activation, theta, offsets, widths, X, y, t * n // T,
                                        (t + 1) * n // T, As[t], Ds[t], Gs[t], Es[t], partial[t], what)
        return sum_partials(grad, partial, losses)

    @kernel
    def batch_gradient(theta, offsets, widths, X, y, rows, start, stop, grad, A, D, G, E, want_loss):
        """Summed gradient over rows[start:stop] (one pass: the buffers hold stop - start rows)."""
        C = widths[widths.shape[0] - 1]
        what = GRAD | LOSS if want_loss else GRAD
        part, _ = _residuals(kind, variant, activation, theta, offsets, widths, X, y, rows, is_indexed(rows), start,
                             stop - start, A, D, E, C, what, 1.0)
        backward(theta, offsets, widths, activation, X, rows, is_indexed(rows), start, A, stop - start, D, G, grad,
                 False)
        return part

    @kernel
    def evaluate(theta, offsets, widths, X, y, A, D, E):
        """(summed loss, number correct) over every row of X."""
        C = widths[widths.shape[0] - 1]
        rows = np.empty(0, dtype=np.int64)
        loss = 0.0
        correct = 0
        n = n_rows(X)
        for s in range(0, n, CHUNK_ROWS):
            m = min(n, s + CHUNK_ROWS) - s
            part, hits = _residuals(kind, variant, activation, theta, offsets, widths, X, y, rows, is_indexed(rows),
                                    s, m, A, D, E, C, WHAT_EVALUATE, 1.0)
            loss += part
            correct += hits
        return loss, correct

    return sgd_epoch, full_gradient, full_gradient_threaded, batch_gradient, evaluate, cohort_sgd


@kernel
def _range_gradient(kind, variant, activation, theta, offsets, widths, X, y, lo, hi, A, D, G, E, grad, what):
    """Add the summed gradient of rows lo .. hi-1 into grad, CHUNK_ROWS rows a pass; returns their summed loss."""
    C = widths[widths.shape[0] - 1]
    rows = np.empty(0, dtype=np.int64)
    loss = 0.0
    for s in range(lo, hi, CHUNK_ROWS):
        m = min(hi, s + CHUNK_ROWS) - s
        part, _ = _residuals(kind, variant, activation, theta, offsets, widths, X, y, rows, is_indexed(rows), s, m,
                             A, D, E, C, what, 1.0)
        loss += part
        backward(theta, offsets, widths, activation, X, rows, is_indexed(rows), s, A, m, D, G, grad, True)
    return loss


@kernel
def _residuals(kind, variant, activation, theta, offsets, widths, X, y, rows, indexed, s, m, A, D, E, C, what, scale):
    """Forward m rows, then the output link: residuals (dloss/dlogits) times ``scale`` in D's first panel;
    returns (summed loss, correct)."""
    forward(theta, offsets, widths, activation, X, rows, indexed, s, m, A)
    last = panel(widths, input_width(X, widths[0]), m, widths.shape[0] - 1)
    Z = A[last:last + m * C]
    part, hits = link(kind, variant, y, rows, indexed, s, m, C, Z, E, what)
    factor = D.dtype.type(scale)
    for k in range(m * C):
        D[k] = Z[k] * factor
    return part, hits

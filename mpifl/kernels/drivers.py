"""Loops over the range kernel: full-batch gradients, SGD epochs, evaluation.

These are the only entry points the training code calls.  The mini-batch loop
runs inside Numba so that no Python runs per batch.
"""

from __future__ import annotations

import numba
import numpy as np

from mpifl.jit import kernel, threaded_kernel
from mpifl.kernels.flags import CORRECT, GRAD, LOSS
from mpifl.kernels.losses import range_loss_grad


@kernel
def add_l2_and_scale(grad, theta, count, l2):
    """Turn a summed data gradient into mean gradient plus l2 * weights (not bias)."""
    C, P = grad.shape
    d = P - 1
    inv = 1.0 / count if count > 0 else 0.0
    for c in range(C):
        for j in range(d):
            grad[c, j] = grad[c, j] * inv + l2 * theta[c, j]
        grad[c, d] = grad[c, d] * inv


@kernel
def momentum_step(theta, velocity, grad, lr, momentum):
    """Heavy-ball SGD: velocity = momentum * velocity + grad; theta -= lr * velocity (plain SGD at 0)."""
    if momentum != 0.0:
        for c in range(theta.shape[0]):
            for j in range(theta.shape[1]):
                velocity[c, j] = momentum * velocity[c, j] + grad[c, j]
                theta[c, j] -= lr * velocity[c, j]
    else:
        for c in range(theta.shape[0]):
            for j in range(theta.shape[1]):
                theta[c, j] -= lr * grad[c, j]


@kernel
def objective_hook(grad, theta, anchor, mu, correction):
    """Add the local objective's extra terms to a mean gradient, in place.

    ``mu * (theta - anchor)`` is the gradient of FedProx's proximal term
    (mu / 2) ||theta - anchor||^2, and ``correction`` is a constant drift
    correction such as SCAFFOLD's c - c_k.  mu = 0 and an empty correction
    skip both loops, so plain local SGD runs exactly the code it ran before.
    """
    C, P = grad.shape
    if mu != 0.0:
        for c in range(C):
            for j in range(P):
                grad[c, j] += mu * (theta[c, j] - anchor[c, j])
    if correction.size != 0:
        for c in range(C):
            for j in range(P):
                grad[c, j] += correction[c, j]


@kernel
def l2_penalty(theta, l2):
    """0.5 * l2 * ||W||^2, the bias excluded."""
    C, P = theta.shape
    total = 0.0
    for c in range(C):
        for j in range(P - 1):
            total += np.float64(theta[c, j]) * np.float64(theta[c, j])
    return 0.5 * l2 * total


@kernel
def gradient_sum(kind, variant, X, y, theta, rows, start, stop, grad, Z, E, want_loss):
    """Summed data gradient over rows[start:stop]; returns the summed loss."""
    grad[:] = 0
    what = GRAD | LOSS if want_loss else GRAD
    loss, _ = range_loss_grad(kind, variant, X, y, theta, rows, True, start, stop, grad, Z, E, what)
    return loss


@kernel
def full_gradient_sum(kind, variant, X, y, theta, grad, Z, E, want_loss):
    """Summed data gradient over every row of X; returns the summed loss."""
    grad[:] = 0
    what = GRAD | LOSS if want_loss else GRAD
    no_rows = np.empty(0, dtype=np.int64)
    loss, _ = range_loss_grad(kind, variant, X, y, theta, no_rows, False, 0, X.shape[0], grad, Z, E, what)
    return loss


@threaded_kernel
def full_gradient_sum_threaded(kind, variant, X, y, theta, grad, partial, Zs, Es, want_loss):
    """As full_gradient_sum, split over partial.shape[0] threads.

    Each thread owns one contiguous row range and its own gradient and scratch
    buffers; the partial gradients are summed in a fixed order, so the result
    depends only on the thread count, never on scheduling.
    """
    T = partial.shape[0]
    n = X.shape[0]
    what = GRAD | LOSS if want_loss else GRAD
    losses = np.zeros(T)
    no_rows = np.empty(0, dtype=np.int64)
    for t in numba.prange(T):
        partial[t] = 0
        lo = t * n // T
        hi = (t + 1) * n // T
        losses[t], _ = range_loss_grad(
            kind, variant, X, y, theta, no_rows, False, lo, hi, partial[t], Zs[t], Es[t], what
        )
    grad[:] = 0
    total = 0.0
    for t in range(T):
        grad += partial[t]
        total += losses[t]
    return total


@kernel
def sgd_epoch(kind, variant, X, y, theta, velocity, grad, Z, E, order, batch_size, lr, momentum, l2, anchor, mu, correction):
    """One epoch of mini-batch SGD with heavy-ball momentum, in the given row order.

    Each step's gradient is the mean data gradient plus l2 * W plus the
    objective hook (anchor, mu, correction); see objective_hook.
    """
    n = order.shape[0]
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        grad[:] = 0
        range_loss_grad(kind, variant, X, y, theta, order, True, s, e, grad, Z, E, np.int64(GRAD))
        add_l2_and_scale(grad, theta, e - s, l2)
        objective_hook(grad, theta, anchor, mu, correction)
        momentum_step(theta, velocity, grad, lr, momentum)


@kernel
def evaluate_sums(kind, variant, X, y, theta, Z, E):
    """(summed loss, number correct) of theta on every row of X."""
    no_rows = np.empty(0, dtype=np.int64)
    # Without GRAD in the flags the gradient argument is never touched.
    return range_loss_grad(
        kind, variant, X, y, theta, no_rows, False, 0, X.shape[0], theta, Z, E,
        np.int64(LOSS | CORRECT),
    )

"""The dense steps around the range kernels: L2 and scaling, the objective hook, the update, the penalty.

The loops that call them (full-batch gradients, SGD epochs, evaluation) are
the entry points in mpifl.kernels.entries.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel, kernel


@inline_kernel
def add_l2_and_scale(grad, theta, count, l2):
    """Turn a summed data gradient into mean gradient plus l2 * weights (not bias)."""
    C, P = grad.shape
    d = P - 1
    inv = 1.0 / count if count > 0 else 0.0
    for c in range(C):
        for j in range(d):
            grad[c, j] = grad[c, j] * inv + l2 * theta[c, j]
        grad[c, d] = grad[c, d] * inv


@inline_kernel
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


@inline_kernel
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


@inline_kernel
def sgd_step(grad, theta, velocity, count, lr, momentum, l2, anchor, mu, correction):
    """One mini-batch step from a summed data gradient over ``count`` rows: mean, L2, the objective hook, update."""
    add_l2_and_scale(grad, theta, count, l2)
    objective_hook(grad, theta, anchor, mu, correction)
    momentum_step(theta, velocity, grad, lr, momentum)


@inline_kernel
def sum_partials(grad, partial, losses):
    """grad = the threads' partial gradients summed in thread order (fixed, so results never depend on
    scheduling); returns their summed loss."""
    grad[:] = 0
    total = 0.0
    for t in range(partial.shape[0]):
        grad += partial[t]
        total += losses[t]
    return total


@kernel
def l2_penalty(theta, l2):
    """0.5 * l2 * ||W||^2, the bias excluded."""
    C, P = theta.shape
    total = 0.0
    for c in range(C):
        for j in range(P - 1):
            total += np.float64(theta[c, j]) * np.float64(theta[c, j])
    return 0.5 * l2 * total

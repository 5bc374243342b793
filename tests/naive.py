"""Plain NumPy references that the compiled kernels and parallel runs are checked against."""

from __future__ import annotations

import numpy as np


def logits(X, theta):
    d = X.shape[1]
    return X @ theta[:, :d].T + theta[:, d]


def loss_and_grad_sum(kind, X, y, theta):
    """(summed loss, summed gradient) of the data term, in float64."""
    X = X.astype(np.float64)
    y = y.astype(np.float64)
    theta = theta.astype(np.float64)
    Z = logits(X, theta)
    if kind == "linear":
        R = Z[:, 0] - y
        loss = 0.5 * np.sum(R**2)
        R = R[:, None]
    elif kind == "logistic":
        z = Z[:, 0]
        loss = np.sum(np.logaddexp(0.0, z) - y * z)
        R = (1.0 / (1.0 + np.exp(-z)) - y)[:, None]
    else:
        Zs = Z - Z.max(axis=1, keepdims=True)
        logp = Zs - np.log(np.exp(Zs).sum(axis=1, keepdims=True))
        Y = np.eye(theta.shape[0])[y.astype(int)]
        loss = -np.sum(logp * Y)
        R = np.exp(logp) - Y
    grad = np.hstack([R.T @ X, R.sum(axis=0)[:, None]])
    return loss, grad


def objective(kind, X, y, theta, l2):
    """Mean loss plus 0.5 * l2 * ||W||^2."""
    loss, _ = loss_and_grad_sum(kind, X, y, theta)
    return loss / X.shape[0] + 0.5 * l2 * np.sum(theta[:, :-1].astype(np.float64) ** 2)


def mean_grad(kind, X, y, theta, l2):
    _, g = loss_and_grad_sum(kind, X, y, theta)
    g = g / X.shape[0]
    g[:, :-1] += l2 * theta[:, :-1]
    return g


def correct(kind, X, y, theta):
    Z = logits(X.astype(np.float64), theta.astype(np.float64))
    if kind == "logistic":
        return int(np.sum((Z[:, 0] > 0) == (y > 0.5)))
    return int(np.sum(np.argmax(Z, axis=1) == y.astype(int)))


def sgd_epoch(kind, X, y, theta, velocity, order, batch, lr, momentum, l2):
    """One epoch of mini-batch SGD with heavy-ball momentum, in float64."""
    theta = theta.astype(np.float64).copy()
    velocity = velocity.astype(np.float64).copy()
    for s in range(0, order.size, batch):
        rows = order[s : s + batch]
        g = mean_grad(kind, X[rows], y[rows], theta, l2)
        velocity = momentum * velocity + g
        theta -= lr * velocity
    return theta, velocity


def gradient_descent(kind, X, y, theta, steps, lr, l2):
    theta = theta.astype(np.float64).copy()
    for _ in range(steps):
        theta -= lr * mean_grad(kind, X, y, theta, l2)
    return theta

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
    loss, R = output_loss_and_residuals(kind, logits(X, theta), y)
    grad = np.hstack([R.T @ X, R.sum(axis=0)[:, None]])
    return loss, grad


def output_loss_and_residuals(kind, Z, y):
    """(summed loss, dloss/dlogits) of logits Z (rows x outputs) under the kind's link, in float64."""
    if kind == "linear":
        R = Z[:, 0] - y
        return float(0.5 * np.sum(R**2)), R[:, None]
    if kind == "logistic":
        z = Z[:, 0]
        return float(np.sum(np.logaddexp(0.0, z) - y * z)), (1.0 / (1.0 + np.exp(-z)) - y)[:, None]
    Zs = Z - Z.max(axis=1, keepdims=True)
    logp = Zs - np.log(np.exp(Zs).sum(axis=1, keepdims=True))
    Y = np.eye(Z.shape[1])[y.astype(int)]
    return float(-np.sum(logp * Y)), np.exp(logp) - Y


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


def sgd_epoch(kind, X, y, theta, velocity, order, batch, lr, momentum, l2, anchor=None, mu=0.0, correction=None):
    """One epoch of mini-batch SGD with heavy-ball momentum, in float64.

    The local objective may add FedProx's (mu / 2) ||theta - anchor||^2 and a
    constant gradient correction (SCAFFOLD's c - c_k).
    """
    theta = theta.astype(np.float64).copy()
    velocity = velocity.astype(np.float64).copy()
    for s in range(0, order.size, batch):
        rows = order[s : s + batch]
        g = mean_grad(kind, X[rows], y[rows], theta, l2)
        if mu:
            g = g + mu * (theta - anchor)
        if correction is not None:
            g = g + correction
        velocity = momentum * velocity + g
        theta -= lr * velocity
    return theta, velocity


def gradient_descent(kind, X, y, theta, steps, lr, l2):
    theta = theta.astype(np.float64).copy()
    for _ in range(steps):
        theta -= lr * mean_grad(kind, X, y, theta, l2)
    return theta


def fednova_norm(tau, rho):
    """||a_k||_1 of Wang et al. (2020) for tau local steps of SGD with momentum rho."""
    if rho == 0:
        return float(tau)
    return (tau - rho * (1 - rho**tau) / (1 - rho)) / (1 - rho)


def federated(algorithm, params, trainers, rounds, plan, n_clients, shape, lr, momentum):
    """Serial simulation of one federated algorithm, written from its paper's pseudo-code.

    ``trainers[k].train(theta, rnd, epochs, hook)`` is client k's local SGD
    (the compiled kernels, themselves checked against sgd_epoch above) and
    returns its step count; ``plan(rnd)`` gives each client's epochs.
    Everything on the server is float64.
    """
    theta = np.zeros(shape)
    c, c_k = np.zeros(shape), [np.zeros(shape) for _ in range(n_clients)]
    v, m = np.zeros(shape), np.zeros(shape)
    if algorithm in ("fedadagrad", "fedadam", "fedyogi"):
        v = np.full(shape, params["tau"] ** 2)
    for rnd in range(1, rounds + 1):
        epochs = plan(rnd)
        chosen = np.flatnonzero(epochs)
        models, sizes, steps, control_changes = [], [], [], []
        losses = []
        for k in chosen:
            losses.append(trainers[k].evaluate(theta)[0] / trainers[k].shard.n)  # q-FedAvg's F_k(theta)
            y = theta.copy()
            hook = None
            if algorithm == "fedprox":
                hook = (theta, params["proximal_mu"], None)
            if algorithm == "scaffold":
                hook = (theta, 0.0, c - c_k[k])
            tau = trainers[k].train(y, rnd, int(epochs[k]), hook)
            if algorithm == "scaffold":  # option II
                new_c = c_k[k] - c + (theta - y) / (fednova_norm(tau, momentum) * lr)
                control_changes.append(new_c - c_k[k])
                c_k[k] = new_c
            models.append(y)
            sizes.append(trainers[k].shard.n)
            steps.append(tau)
        if not models:
            continue
        p = np.array(sizes, dtype=np.float64) / sum(sizes)
        average = sum(pk * yk for pk, yk in zip(p, models))  # FedAvg's model average
        mean_delta = average - theta
        if algorithm in ("fedavg", "fedprox", "ditto"):  # Ditto's global model is FedAvg's
            theta = average
        elif algorithm == "scaffold":
            theta = theta + params["lr"] * np.mean([yk - theta for yk in models], axis=0)
            c = c + sum(control_changes) / n_clients
        elif algorithm == "fednova":
            a = np.array([fednova_norm(t, momentum) for t in steps])
            tau_eff = float(p @ a)
            theta = theta - tau_eff * sum(pk * (theta - yk) / ak for pk, yk, ak in zip(p, models, a))
        elif algorithm == "qfedavg":  # Li et al. 2020, Algorithm 2, with L = 1 / lr
            L, q = 1.0 / lr, params["q"]
            dws = [L * (theta - yk) for yk in models]
            hs = [q * f ** (q - 1) * float(np.sum(dw * dw)) + L * f ** q for f, dw in zip(losses, dws)]
            theta = theta - sum(f ** q * dw for f, dw in zip(losses, dws)) / sum(hs)
        elif algorithm == "fedavgm":
            v = params["momentum"] * v + (theta - average)
            theta = theta - params["lr"] * v
        else:
            m = params["beta1"] * m + (1 - params["beta1"]) * mean_delta
            d2 = mean_delta**2
            if algorithm == "fedadagrad":
                v = v + d2
            elif algorithm == "fedadam":
                v = params["beta2"] * v + (1 - params["beta2"]) * d2
            else:
                v = v - (1 - params["beta2"]) * d2 * np.sign(v - d2)
            theta = theta + params["lr"] * m / (np.sqrt(v) + params["tau"])
    return theta


def mlp_loss_and_grad_sum(layout, activation, kind, X, y, theta):
    """(summed loss, summed flat gradient) of an MLP's data term, forward and backward in float64 NumPy."""
    X, y, theta = (a.astype(np.float64) for a in (X, y, theta))
    H = [X]
    for layer in range(layout.n_layers):
        Z = H[-1] @ layout.weights(theta, layer) + layout.bias(theta, layer)
        if layer < layout.n_layers - 1:
            Z = np.maximum(Z, 0.0) if activation == "relu" else np.tanh(Z)
        H.append(Z)
    loss, R = output_loss_and_residuals(kind, H[-1], y)
    grad = np.zeros_like(theta)
    for layer in range(layout.n_layers - 1, -1, -1):
        layout.weights(grad, layer)[...] = H[layer].T @ R
        layout.bias(grad, layer)[...] = R.sum(axis=0)
        if layer:
            R = R @ layout.weights(theta, layer).T
            R = R * (H[layer] > 0) if activation == "relu" else R * (1.0 - H[layer] ** 2)
    return float(loss), grad


def qsgd_encode(x, uniforms, bucket, levels, bits):
    """QSGD in plain NumPy: (bucket norms, packed offset-binary codes, most significant bit first)."""
    n = x.size
    buckets = -(-n // bucket)
    padded = np.zeros(buckets * bucket)
    padded[:n] = x
    norms = np.sqrt((padded.reshape(buckets, bucket) ** 2).sum(axis=1))
    spread = np.repeat(norms, bucket)[:n]
    scaled = np.divide(np.abs(x) * levels, spread, out=np.zeros(n), where=spread > 0)
    low = np.floor(scaled)
    level = np.minimum(low + (uniforms < scaled - low), levels)
    codes = (np.sign(x) * level + levels).astype(np.uint8)
    planes = np.unpackbits(codes[:, None], axis=1)[:, 8 - bits:]
    return norms, np.packbits(planes.reshape(-1))


def qsgd_decode(packed, norms, bucket, levels, bits, n):
    planes = np.unpackbits(packed)[: n * bits].reshape(n, bits)
    full = np.zeros((n, 8), dtype=np.uint8)
    full[:, 8 - bits:] = planes
    codes = np.packbits(full, axis=1)[:, 0].astype(np.float64)
    return np.repeat(norms, bucket)[:n] * (codes - levels) / levels

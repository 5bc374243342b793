"""A convolutional network's fused loss, gradient and SGD step on one flat parameter vector, in direct loops.

The network is a program of layers, one row of ``prog`` each:
``[kind, c_in, h_in, w_in, c_out, h_out, w_out, k, pad]`` with kind CONV
(k x k kernels, stride 1, ``pad`` zeros around: "same" or "valid"), POOL
(2 x 2 max-pooling, stride 2) or DENSE (``c_out`` units over the flattened
input).  A ReLU follows every CONV and every DENSE but the last, whose
outputs are the logits of the output link (softmax, logistic or linear).
Layer l's weights and biases sit at ``poff[l]`` in theta (conv weights as
(c_out, c_in, k, k)); its outputs at ``aoff[l + 1]`` in a per-sample
activation buffer whose slice ``aoff[0]`` holds the input row.

Every function is pure: no MPI, no I/O, preallocated C-contiguous arrays
(activations, their gradients and the pooling's argmax, one sample's worth).
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import kernel

CONV, POOL, DENSE = 0, 1, 2
LINEAR_LINK, LOGISTIC_LINK, SOFTMAX_LINK = 0, 1, 2  # mpifl.links' codes


@kernel
def forward(theta, x, A, arg, prog, poff, aoff):
    """One sample's activations: input x into A, then every layer's outputs (ReLU after all but the last)."""
    A[aoff[0]:aoff[0] + x.shape[0]] = x
    last = prog.shape[0] - 1
    for l in range(prog.shape[0]):
        kind, ci_n, hi, wi, co_n, ho, wo, k, pad = prog[l]
        src, dst, wo_, bo = aoff[l], aoff[l + 1], poff[l, 0], poff[l, 1]
        if kind == CONV:
            for co in range(co_n):
                for i in range(ho):
                    for j in range(wo):
                        s = theta[bo + co]
                        for ci in range(ci_n):
                            base = wo_ + ((co * ci_n + ci) * k) * k
                            for di in range(k):
                                ii = i + di - pad
                                if 0 <= ii < hi:
                                    row = src + (ci * hi + ii) * wi
                                    for dj in range(k):
                                        jj = j + dj - pad
                                        if 0 <= jj < wi:
                                            s += theta[base + di * k + dj] * A[row + jj]
                        A[dst + (co * ho + i) * wo + j] = s if s > 0 else 0.0
        elif kind == POOL:
            for c in range(co_n):
                for i in range(ho):
                    for j in range(wo):
                        at = src + (c * hi + 2 * i) * wi + 2 * j
                        best, where = A[at], at
                        for cand in (at + 1, at + wi, at + wi + 1):
                            if A[cand] > best:
                                best, where = A[cand], cand
                        out = dst + (c * ho + i) * wo + j
                        A[out] = best
                        arg[out] = where
        else:
            n_in = ci_n * hi * wi
            for u in range(co_n):
                s = theta[bo + u]
                w = wo_ + u * n_in
                for q in range(n_in):
                    s += theta[w + q] * A[src + q]
                A[dst + u] = s if (s > 0 or l == last) else 0.0


@kernel
def output(A, D, at, n_out, link, label):
    """The loss of the logits A[at:at + n_out] against ``label``, their gradient into D, and whether the
    prediction is right; returns (loss, correct)."""
    if link == SOFTMAX_LINK:
        top = A[at]
        best = 0
        for c in range(1, n_out):
            if A[at + c] > top:
                top, best = A[at + c], c
        total = 0.0
        for c in range(n_out):
            total += math.exp(A[at + c] - top)
        y = int(label)
        for c in range(n_out):
            D[at + c] = math.exp(A[at + c] - top) / total - (1.0 if c == y else 0.0)
        return math.log(total) - (A[at + y] - top), int(best == y)
    z = A[at]
    if link == LOGISTIC_LINK:
        p = 1.0 / (1.0 + math.exp(-z))
        D[at] = p - label
        loss = (math.log1p(math.exp(-abs(z))) + max(z, 0.0)) - label * z  # log(1 + e^z) - y z
        return loss, int((z > 0.0) == (label > 0.5))
    D[at] = z - label
    return 0.5 * (z - label) * (z - label), 0


@kernel
def backward(theta, grad, A, D, arg, prog, poff, aoff):
    """Add one sample's gradient to grad, from D's logits gradient down to the first layer's weights."""
    for l in range(prog.shape[0] - 1, -1, -1):
        kind, ci_n, hi, wi, co_n, ho, wo, k, pad = prog[l]
        src, dst, wo_, bo = aoff[l], aoff[l + 1], poff[l, 0], poff[l, 1]
        n_in = ci_n * hi * wi
        if l > 0:
            D[src:src + n_in] = 0.0
        if kind == POOL:
            for o in range(co_n * ho * wo):
                D[arg[dst + o]] += D[dst + o]
            continue
        last = l == prog.shape[0] - 1
        if kind == DENSE:
            for u in range(co_n):
                g = D[dst + u] if (last or A[dst + u] > 0) else 0.0
                if g == 0.0:
                    continue
                grad[bo + u] += g
                w = wo_ + u * n_in
                for q in range(n_in):
                    grad[w + q] += g * A[src + q]
                if l > 0:
                    for q in range(n_in):
                        D[src + q] += theta[w + q] * g
            continue
        for co in range(co_n):
            for i in range(ho):
                for j in range(wo):
                    out = dst + (co * ho + i) * wo + j
                    g = D[out] if A[out] > 0 else 0.0
                    if g == 0.0:
                        continue
                    grad[bo + co] += g
                    for ci in range(ci_n):
                        base = wo_ + ((co * ci_n + ci) * k) * k
                        for di in range(k):
                            ii = i + di - pad
                            if 0 <= ii < hi:
                                row = src + (ci * hi + ii) * wi
                                for dj in range(k):
                                    jj = j + dj - pad
                                    if 0 <= jj < wi:
                                        grad[base + di * k + dj] += g * A[row + jj]
                                        if l > 0:
                                            D[row + jj] += theta[base + di * k + dj] * g


@kernel
def rows_loss_grad(theta, X, y, order, start, stop, grad, A, D, arg, prog, poff, aoff, link, want_grad):
    """Summed loss and correct predictions over rows order[start:stop] (or start:stop when order is empty),
    adding their summed gradient to grad when ``want_grad``."""
    last = prog.shape[0] - 1
    at, n_out = aoff[last + 1], prog[last, 4]
    loss = 0.0
    correct = 0
    for r in range(start, stop):
        row = order[r] if order.shape[0] > 0 else r
        forward(theta, X[row], A, arg, prog, poff, aoff)
        part, right = output(A, D, at, n_out, link, y[row])
        loss += part
        correct += right
        if want_grad:
            backward(theta, grad, A, D, arg, prog, poff, aoff)
    return loss, correct


@kernel
def step(theta, velocity, grad, count, lr, momentum, l2, mask, anchor, mu, correction):
    """One mini-batch step from a summed gradient over ``count`` rows: the mean, l2 on the weights (``mask``),
    the local objective's hook (FedProx's mu (theta - anchor), SCAFFOLD's correction), heavy-ball momentum."""
    inv = 1.0 / count if count > 0 else 0.0
    for p in range(theta.shape[0]):
        g = grad[p] * inv + l2 * mask[p] * theta[p]
        if mu != 0.0:
            g += mu * (theta[p] - anchor[p])
        if correction.shape[0] != 0:
            g += correction[p]
        if momentum != 0.0:
            velocity[p] = momentum * velocity[p] + g
            theta[p] -= lr * velocity[p]
        else:
            theta[p] -= lr * g


@kernel
def sgd_epoch(theta, velocity, grad, X, y, order, batch_size, lr, momentum, l2, mask, anchor, mu, correction,
              A, D, arg, prog, poff, aoff, link):
    """One epoch of mini-batch SGD over rows in ``order``, updating theta in place."""
    n = order.shape[0]
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        grad[:] = 0.0
        rows_loss_grad(theta, X, y, order, s, e, grad, A, D, arg, prog, poff, aoff, link, True)
        step(theta, velocity, grad, e - s, lr, momentum, l2, mask, anchor, mu, correction)


def layer_program(input_shape: tuple[int, int, int], layers: list[tuple], n_outputs: int):
    """(prog, poff, aoff, size, mask) for ``layers`` [("conv", k, c_out, pad) | ("pool",) | ("dense", units)]
    on inputs of ``input_shape`` (c, h, w), ending in a dense layer of ``n_outputs`` logits."""
    c, h, w = input_shape
    rows, poff, aoff = [], [], [0, c * h * w]
    at = 0
    weights = []
    for layer in [*layers, ("dense", n_outputs)]:
        if layer[0] == "conv":
            _, k, c_out, pad = layer
            ho, wo = h + 2 * pad - k + 1, w + 2 * pad - k + 1
            rows.append([CONV, c, h, w, c_out, ho, wo, k, pad])
            n_w = c_out * c * k * k
            c, h, w = c_out, ho, wo
        elif layer[0] == "pool":
            rows.append([POOL, c, h, w, c, h // 2, w // 2, 2, 0])
            n_w, c_out = 0, 0
            h, w = h // 2, w // 2
        else:
            c_out = layer[1]
            rows.append([DENSE, c, h, w, c_out, 1, 1, 0, 0])
            n_w = c_out * c * h * w
            c, h, w = c_out, 1, 1
        poff.append([at, at + n_w])
        weights.append((at, n_w))
        at += n_w + c_out
        aoff.append(aoff[-1] + c * h * w)
    mask = np.zeros(at)
    for start, n_w in weights:
        mask[start:start + n_w] = 1.0
    return (np.array(rows, dtype=np.int64), np.array(poff, dtype=np.int64), np.array(aoff, dtype=np.int64), at,
            mask)

"""A convolutional network's fused loss, gradient and SGD step on one flat parameter vector, in direct loops.

The network is a program of layers, one row of ``prog`` each:
``[kind, c_in, h_in, w_in, c_out, h_out, w_out, k, pad]`` with kind CONV
(k x k kernels, stride 1, ``pad`` zeros around: "same" or "valid"), POOL
(2 x 2 max-pooling, stride 2) or DENSE (``c_out`` units over the flattened
input).  A ReLU follows every CONV and every DENSE but the last, whose
outputs are the logits of the output link (softmax, logistic or linear).
Layer l's weights and biases sit at ``poff[l]`` in theta (conv weights as
(c_out, c_in, k, k)); a batch of n samples keeps its outputs from
``n * aoff[l + 1]`` on, sample by sample, after the input rows at 0.

A convolution is one GEMM over the batch (im2col, then BLAS through Numba's
``np.dot``), and so are its two gradients (the weights', and the input's,
added back by col2im); dense layers are GEMMs too.  Every function is pure:
no MPI, no I/O, preallocated C-contiguous buffers for batches of up to
``chunk`` rows.
"""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import kernel

CONV, POOL, DENSE = 0, 1, 2
LINEAR_LINK, LOGISTIC_LINK, SOFTMAX_LINK = 0, 1, 2  # mpifl.links' codes


@kernel
def im2col(A, src, n, ci_n, hi, wi, ho, wo, k, pad, cols):
    """cols[(s, i, j), (c, di, dj)] = the input pixel under kernel tap (di, dj) at output (i, j) of sample s
    (zero in the padding): the convolution becomes one GEMM."""
    K = ci_n * k * k
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                r = ((s * ho + i) * wo + j) * K
                for c in range(ci_n):
                    plane = src + (s * ci_n + c) * hi * wi
                    for di in range(k):
                        ii = i + di - pad
                        for dj in range(k):
                            jj = j + dj - pad
                            inside = 0 <= ii < hi and 0 <= jj < wi
                            cols[r + (c * k + di) * k + dj] = A[plane + ii * wi + jj] if inside else 0.0


@kernel
def col2im(dcols, D, src, n, ci_n, hi, wi, ho, wo, k, pad):
    """The adjoint of im2col: add each column's gradient back onto the input pixel it came from."""
    K = ci_n * k * k
    for s in range(n):
        for i in range(ho):
            for j in range(wo):
                r = ((s * ho + i) * wo + j) * K
                for c in range(ci_n):
                    plane = src + (s * ci_n + c) * hi * wi
                    for di in range(k):
                        ii = i + di - pad
                        if 0 <= ii < hi:
                            for dj in range(k):
                                jj = j + dj - pad
                                if 0 <= jj < wi:
                                    D[plane + ii * wi + jj] += dcols[r + (c * k + di) * k + dj]


@kernel
def forward(theta, n, A, arg, cols, mat, prog, poff, aoff):
    """A batch's activations, layer by layer, in (sample, channel, row, column) order: each layer's outputs
    for n samples start at n * aoff[l + 1]; the input rows are already at 0."""
    last = prog.shape[0] - 1
    for l in range(prog.shape[0]):
        kind, ci_n, hi, wi, co_n, ho, wo, k, pad = prog[l]
        src, dst, w0, b0 = n * aoff[l], n * aoff[l + 1], poff[l, 0], poff[l, 1]
        if kind == CONV:
            K, P = ci_n * k * k, ho * wo
            im2col(A, src, n, ci_n, hi, wi, ho, wo, k, pad, cols)
            out = mat[:n * P * co_n].reshape(n * P, co_n)
            np.dot(cols[:n * P * K].reshape(n * P, K), theta[w0:b0].reshape(co_n, K).T, out)
            for s in range(n):
                for co in range(co_n):
                    bias = theta[b0 + co]
                    at = dst + (s * co_n + co) * P
                    for q in range(P):
                        v = out[s * P + q, co] + bias
                        A[at + q] = v if v > 0 else 0.0
        elif kind == POOL:
            for s in range(n):
                for c in range(co_n):
                    for i in range(ho):
                        for j in range(wo):
                            at = src + ((s * ci_n + c) * hi + 2 * i) * wi + 2 * j
                            best, where = A[at], at
                            for cand in (at + 1, at + wi, at + wi + 1):
                                if A[cand] > best:
                                    best, where = A[cand], cand
                            o = dst + ((s * co_n + c) * ho + i) * wo + j
                            A[o] = best
                            arg[o] = where
        else:
            n_in = ci_n * hi * wi
            out = mat[:n * co_n].reshape(n, co_n)
            np.dot(A[src:src + n * n_in].reshape(n, n_in), theta[w0:b0].reshape(co_n, n_in).T, out)
            for s in range(n):
                for u in range(co_n):
                    v = out[s, u] + theta[b0 + u]
                    A[dst + s * co_n + u] = v if (v > 0 or l == last) else 0.0


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
def backward(theta, grad, n, A, D, arg, cols, mat, wbuf, prog, poff, aoff):
    """Add a batch's summed gradient to grad, from D's logits gradients down to the first layer's weights."""
    last = prog.shape[0] - 1
    for l in range(last, -1, -1):
        kind, ci_n, hi, wi, co_n, ho, wo, k, pad = prog[l]
        src, dst, w0, b0 = n * aoff[l], n * aoff[l + 1], poff[l, 0], poff[l, 1]
        n_in = ci_n * hi * wi
        if l > 0:
            D[src:src + n * n_in] = 0.0
        if kind == POOL:
            for o in range(dst, dst + n * co_n * ho * wo):
                D[arg[o]] += D[o]
        elif kind == DENSE:
            g = D[dst:dst + n * co_n].reshape(n, co_n)
            for s in range(n):
                for u in range(co_n):
                    if l != last and A[dst + s * co_n + u] <= 0:
                        g[s, u] = 0.0
                    grad[b0 + u] += g[s, u]
            dW = wbuf[:co_n * n_in].reshape(co_n, n_in)
            np.dot(g.T, A[src:src + n * n_in].reshape(n, n_in), dW)
            grad[w0:b0] += wbuf[:co_n * n_in]
            if l > 0:
                np.dot(g, theta[w0:b0].reshape(co_n, n_in), D[src:src + n * n_in].reshape(n, n_in))
        else:
            K, P = ci_n * k * k, ho * wo
            G = mat[:n * P * co_n].reshape(n * P, co_n)
            for s in range(n):
                for co in range(co_n):
                    at = dst + (s * co_n + co) * P
                    total = 0.0
                    for q in range(P):
                        v = D[at + q] if A[at + q] > 0 else 0.0
                        G[s * P + q, co] = v
                        total += v
                    grad[b0 + co] += total
            im2col(A, src, n, ci_n, hi, wi, ho, wo, k, pad, cols)
            C = cols[:n * P * K].reshape(n * P, K)
            dW = wbuf[:co_n * K].reshape(co_n, K)
            np.dot(G.T, C, dW)
            grad[w0:b0] += wbuf[:co_n * K]
            if l > 0:
                np.dot(G, theta[w0:b0].reshape(co_n, K), C)
                col2im(cols, D, src, n, ci_n, hi, wi, ho, wo, k, pad)


@kernel
def rows_loss_grad(theta, X, y, order, start, stop, grad, A, D, arg, cols, mat, wbuf, prog, poff, aoff, link,
                   want_grad, chunk):
    """Summed loss and correct predictions over rows order[start:stop] (or start:stop when order is empty), in
    batches of at most ``chunk`` rows (the buffers' capacity), adding their summed gradient to grad when
    ``want_grad``."""
    last = prog.shape[0] - 1
    n_in, n_out = X.shape[1], prog[last, 4]
    loss = 0.0
    correct = 0
    for s0 in range(start, stop, chunk):
        n = min(chunk, stop - s0)
        for s in range(n):
            row = order[s0 + s] if order.shape[0] > 0 else s0 + s
            A[s * n_in:(s + 1) * n_in] = X[row]
        forward(theta, n, A, arg, cols, mat, prog, poff, aoff)
        at = n * aoff[last + 1]
        for s in range(n):
            row = order[s0 + s] if order.shape[0] > 0 else s0 + s
            part, right = output(A, D, at + s * n_out, n_out, link, y[row])
            loss += part
            correct += right
        if want_grad:
            backward(theta, grad, n, A, D, arg, cols, mat, wbuf, prog, poff, aoff)
    return loss, correct


@kernel
def step(theta, velocity, grad, count, lr, momentum, l2, mask, anchor, mu, correction, lo, hi):
    """One mini-batch step from a summed gradient over ``count`` rows: the mean, l2 on the weights (``mask``),
    the local objective's hook (FedProx's mu (theta - anchor), SCAFFOLD's correction), heavy-ball momentum;
    on theta[lo:hi] only, the rest frozen."""
    inv = 1.0 / count if count > 0 else 0.0
    for p in range(lo, hi):
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
              A, D, arg, cols, mat, wbuf, prog, poff, aoff, link, chunk, lo, hi):
    """One epoch of mini-batch SGD over rows in ``order``, updating theta[lo:hi] in place."""
    n = order.shape[0]
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        grad[:] = 0.0
        rows_loss_grad(theta, X, y, order, s, e, grad, A, D, arg, cols, mat, wbuf, prog, poff, aoff, link, True,
                       chunk)
        step(theta, velocity, grad, e - s, lr, momentum, l2, mask, anchor, mu, correction, lo, hi)


def workspace(prog: np.ndarray, aoff: np.ndarray, chunk: int) -> tuple[int, int, int, int]:
    """Buffer sizes for batches of ``chunk`` rows: activations, im2col columns, GEMM outputs, weight gradients."""
    cols = mat = wbuf = 1
    for kind, ci, hi, wi, co, ho, wo, k, _ in prog:
        if kind == CONV:
            cols = max(cols, chunk * ho * wo * ci * k * k)
            mat = max(mat, chunk * ho * wo * co)
            wbuf = max(wbuf, co * ci * k * k)
        elif kind == DENSE:
            mat = max(mat, chunk * co)
            wbuf = max(wbuf, co * ci * hi * wi)
    return chunk * int(aoff[-1]), cols, mat, wbuf


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

"""The losses' gradients and Hessians for every output at once, and their fixed-point form: compiled loops over a
participant's rows (pure, preallocated), one pass each."""

from __future__ import annotations

import math

import numpy as np

from mpifl.jit import inline_kernel, kernel

HESSIAN_FLOOR = 1e-16  # a classifier's Hessian p (1 - p), kept off zero where p saturates


@kernel
def squared_gradients(scores, y, g, h):
    """Squared error (y - s)^2 / 2: g = s - y, h = 1."""
    for i in range(y.shape[0]):
        g[0, i] = scores[i, 0] - y[i]
        h[0, i] = 1.0


@kernel
def logistic_gradients(scores, y, g, h):
    """Logistic loss of the margin s: g = p - y, h = p (1 - p), p = 1 / (1 + e^-s)."""
    for i in range(y.shape[0]):
        p = 1.0 / (1.0 + math.exp(-scores[i, 0]))
        g[0, i] = p - y[i]
        h[0, i] = max(p * (1.0 - p), HESSIAN_FLOOR)


@kernel
def softmax_gradients(scores, y, g, h):
    """Softmax cross-entropy, every class at once: g_k = p_k - [y = k], h_k = p_k (1 - p_k)."""
    K = scores.shape[1]
    for i in range(y.shape[0]):
        top = scores[i, 0]
        for k in range(1, K):
            top = max(top, scores[i, k])
        total = 0.0
        for k in range(K):
            total += math.exp(scores[i, k] - top)
        label = int(y[i])
        for k in range(K):
            p = math.exp(scores[i, k] - top) / total
            g[k, i] = p - (1.0 if k == label else 0.0)
            h[k, i] = max(p * (1.0 - p), HESSIAN_FLOOR)


@kernel
def peaks(g, h, rows, every_row, out):
    """out = (max |g|, max h) over rows (or every row)."""
    top_g, top_h = 0.0, 0.0
    n = g.shape[0] if every_row else rows.shape[0]
    for r in range(n):
        i = r if every_row else rows[r]
        top_g = max(top_g, abs(g[i]))
        top_h = max(top_h, h[i])
    out[0], out[1] = top_g, top_h


@inline_kernel
def _scaled(value, half, rest):
    """value * 2^(half + rest), exact (two power-of-two factors, so neither overflows where the product does not)."""
    return value * half * rest


@kernel
def to_fixed(values, exponent, out):
    """out = round-half-even(values * 2^exponent), as int64."""
    half, rest = math.ldexp(1.0, exponent // 2), math.ldexp(1.0, exponent - exponent // 2)
    for i in range(values.shape[0]):
        out[i] = np.int64(np.rint(_scaled(values[i], half, rest)))


@kernel
def to_fixed_packed(values, exponent, count_bits, out):
    """out = round-half-even(values * 2^exponent) << count_bits | 1: a row's Hessian and its count of one."""
    half, rest = math.ldexp(1.0, exponent // 2), math.ldexp(1.0, exponent - exponent // 2)
    for i in range(values.shape[0]):
        out[i] = (np.int64(np.rint(_scaled(values[i], half, rest))) << count_bits) | 1

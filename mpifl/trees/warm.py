"""Compile (or load from Numba's cache) every tree kernel on a tiny problem, so that compile time is reported
apart from training time."""

from __future__ import annotations

import time

import numpy as np

from mpifl.trees import binning
from mpifl.trees import gradients as G
from mpifl.trees import kernels as K


def warm_up(wide: bool = False) -> float:
    """Call each tree kernel once in the types a fit uses (wide: more than 255 bins, uint16 bins); returns the
    seconds taken."""
    started = time.perf_counter()
    X = np.array([[0.0, 1.0], [1.0, np.nan], [2.0, 0.5]])
    lo, hi = np.zeros(2), np.full(2, 2.0)
    counts = np.empty((2, 8), dtype=np.int64)
    binning.count_buckets(X, lo, hi, counts)
    edges, n_edges = np.array([[0.5, np.inf], [0.7, np.inf]]), np.array([1, 1])
    rows = np.arange(3, dtype=np.int64)
    for dtype in (np.uint16 if wide else np.uint8,):
        binned = np.empty((2, 3), dtype=dtype)
        K.bin_rows(X, edges, n_edges, 3, binned)
        gq, hp = np.array([1, -1, 2]), np.empty(3, dtype=np.int64)
        G.to_fixed_packed(np.ones(3), 0, 2, hp)
        hist = np.empty((2, 4, K.CHANNELS), dtype=np.int64)
        K.build_histogram(binned, rows, 0, 3, gq, hp, np.empty((2, K.TILE), dtype=np.int64), hist)
        K.build_histogram_by_rows(np.ascontiguousarray(binned.T), rows, 0, 3, gq, hp, hist)
        K.build_histogram_plain(binned, rows, 0, 3, gq, hp, hist)
        K.subtract(hist, hist, np.empty_like(hist))
        counts = np.empty((2, 4, 3), dtype=np.int64)
        K.build_class_histogram(np.ascontiguousarray(binned.T), rows, 0, 3, np.array([0, 1, 1]), np.ones(3, np.int64),
                                counts)
        K.subtract(counts, counts, np.empty_like(counts))
        K.varying_features(counts, n_edges + 1, 3, 2, -1, np.ones(2, dtype=np.int8), np.empty(2, dtype=np.int8))
        K.varying_features(hist, n_edges + 1, 3, 1, 3, np.ones(2, dtype=np.int8), np.empty(2, dtype=np.int8))
        K.best_gini_split(counts, n_edges + 1, 3, 1, 0.5, np.ones(2, dtype=np.int8), np.empty(2), np.zeros(7))
        K.best_split(hist, n_edges + 1, 3, 2, 1.0, 1.0, 1.0, 0.0, 0.0, 1, np.ones(2, dtype=np.int8), np.zeros(7))
        K.partition(binned, rows.copy(), 0, 3, 0, 0, 3, 1, np.empty(3, dtype=np.int64))
        tree = (np.array([0, -1, -1]), np.array([0, -1, -1]), np.array([1, 0, 0], dtype=np.int8),
                np.array([1, -1, -1]), np.array([2, -1, -1]), np.zeros(3))
        K.predict_binned(binned, 3, *tree, np.zeros((3, 1)), 0)
    K.predict_raw(X, tree[0], np.array([0.5, np.nan, np.nan]), *tree[2:], np.zeros((3, 1)), 0)
    K.add_leaf_values(rows, np.array([[1, 0, 3]]), np.zeros(3), np.zeros((3, 1)), 0)
    K.sampled_rows(0, 0, rows, 0.5, np.empty(3, dtype=np.int64))
    K.poisson_weights(0, 0, rows, np.empty(3, dtype=np.int64))
    K.split_features(0, 0, 0, np.ones(2, dtype=np.int8), 1, np.empty(2, dtype=np.int64), np.empty(2, dtype=np.int8))
    y, g, h = np.array([0.0, 1.0, 1.0]), np.empty((2, 3)), np.empty((2, 3))
    for gradients, outputs in ((G.squared_gradients, 1), (G.logistic_gradients, 1), (G.softmax_gradients, 2)):
        gradients(np.zeros((3, outputs)), y, g, h)
    G.peaks(g[0], h[0], rows, True, np.empty(2))
    G.to_fixed(g[0], 3, np.empty(3, dtype=np.int64))
    return time.perf_counter() - started

"""The histogram tree's compiled kernels: binning rows, building a node's histogram, finding its best split and
partitioning its rows.  Pure: no MPI, no I/O, preallocated C-contiguous arrays in and out.

A histogram has two int64 channels per (feature, bin): the node's fixed-point gradient sum, and its fixed-point
Hessian sum and row count packed in one integer (the Hessian shifted above ``count_bits`` bits that hold the
count: the job's row count fits them and the Hessian sum stays below 2^(62 - count_bits), so the packed sums
never carry into each other).  Integers add exactly in any order, so a histogram summed over ranks (distributed
mode) or clients (federated mode) is the same bytes however the rows are spread, and so are the trees grown
from it.
"""

from __future__ import annotations

import numpy as np

from mpifl.jit import inline_kernel, kernel
from mpifl.kernels.prefetch import prefetch

GRAD, PACKED = 0, 1  # the channels; PACKED = Hessian << count_bits | rows
CHANNELS = 2
FEATURES_AT_ONCE = 4  # a histogram pass adds four features' bins per row read
PREFETCH_ROWS = 16  # how far ahead a sparse node's rows are fetched


@kernel
def bin_rows(X, edges, n_edges, missing_bin, out):
    """out[f, i] = the number of edges of feature f below X[i, f] (so bin <= t exactly when x <= edges[f, t]), or
    missing_bin for NaN: feature-major, so that a histogram walks one feature's bins at a time.  (A grid guess
    stepped to the bin measured 1.5x slower than this binary search: its branches do not predict.)"""
    n, F = X.shape
    for f in range(F):
        e = edges[f]
        top = n_edges[f]
        for i in range(n):
            x = X[i, f]
            if x != x:
                out[f, i] = missing_bin
                continue
            lo, hi = 0, top
            while lo < hi:  # the first edge >= x
                mid = (lo + hi) >> 1
                if e[mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            out[f, i] = lo


TILE = 2048  # rows whose gradients are gathered at once, then passed over feature by feature (in L1)


@kernel
def build_histogram_plain(binned, rows, start, stop, gq, hp, hist):
    """The floor: feature by feature, each row's bin, gradient and packed Hessian read where they lie."""
    hist[:] = 0
    for f in range(binned.shape[0]):
        column = binned[f]
        h = hist[f]
        for r in range(start, stop):
            i = rows[r]
            b = column[i]
            h[b, GRAD] += gq[i]
            h[b, PACKED] += hp[i]


@inline_kernel
def _add_rows(binned, f, hist, rows, t0, t1, ordered):
    """Feature f's bins of rows[t0:t1] into hist[f] (one feature: the remainder of the four-at-once passes)."""
    column = binned[f]
    h = hist[f]
    for r in range(t0, t1):
        b = column[rows[r]]
        h[b, GRAD] += ordered[0, r - t0]
        h[b, PACKED] += ordered[1, r - t0]


@kernel
def build_histogram(binned, rows, start, stop, gq, hp, ordered, hist):
    """hist[f, b] = (sum gq, sum hp) over rows[start:stop] whose feature f falls in bin b (hp: the packed
    Hessian and count of each row).

    Tile by tile, the rows' values are gathered into ``ordered`` (2, TILE), then four features at a time add
    their bins of the tile's rows (four 4 KiB slices of the histogram at 255 bins: they stay in L1).  A node's
    rows are in ascending order (partition keeps it), so each column is read forwards."""
    hist[:] = 0
    F = binned.shape[0]
    for t0 in range(start, stop, TILE):
        t1 = min(stop, t0 + TILE)
        for r in range(t0, t1):
            i = rows[r]
            ordered[0, r - t0] = gq[i]
            ordered[1, r - t0] = hp[i]
        f = 0
        while f + FEATURES_AT_ONCE <= F:
            c0, c1, c2, c3 = binned[f], binned[f + 1], binned[f + 2], binned[f + 3]
            h0, h1, h2, h3 = hist[f], hist[f + 1], hist[f + 2], hist[f + 3]
            for r in range(t0, t1):
                i = rows[r]
                g = ordered[0, r - t0]
                h = ordered[1, r - t0]
                b = c0[i]
                h0[b, GRAD] += g
                h0[b, PACKED] += h
                b = c1[i]
                h1[b, GRAD] += g
                h1[b, PACKED] += h
                b = c2[i]
                h2[b, GRAD] += g
                h2[b, PACKED] += h
                b = c3[i]
                h3[b, GRAD] += g
                h3[b, PACKED] += h
            f += FEATURES_AT_ONCE
        while f < F:
            _add_rows(binned, f, hist, rows, t0, t1, ordered)
            f += 1


# A node with fewer than 1/SPARSE_NODE of the rows gathers them row by row.  Measured here (AMD EPYC, 20 trees
# on 750k x 32 rows): any threshold from 1/2 to 1/6 took 3.4-3.6 s against 4.2-4.3 s for columns everywhere.
SPARSE_NODE = 4


@kernel
def build_histogram_by_rows(binned_rows, rows, start, stop, gq, hp, hist):
    """build_histogram for a node whose rows are a small share of them, far apart: each row's bins are one
    contiguous run of binned_rows (n, F), fetched ahead, where the columns would cost a cache line per (row,
    feature).  At 1/100 of 1M x 32 random rows: 3.3 ns a (row, feature) against the columns' 10.5."""
    hist[:] = 0
    F = binned_rows.shape[1]
    for r in range(start, stop):
        i = rows[r]
        if r + PREFETCH_ROWS < stop:
            ahead = rows[r + PREFETCH_ROWS]
            prefetch(binned_rows, ahead * F)
            prefetch(gq, ahead)
            prefetch(hp, ahead)
        g, h = gq[i], hp[i]
        for f in range(F):
            b = binned_rows[i, f]
            hist[f, b, GRAD] += g
            hist[f, b, PACKED] += h


@kernel
def subtract(parent, child, out):
    """out = parent - child: the sibling's histogram without a pass over its rows (packed fields subtract alone:
    neither goes below zero)."""
    for f in range(parent.shape[0]):
        for b in range(parent.shape[1]):
            for c in range(parent.shape[2]):
                out[f, b, c] = parent[f, b, c] - child[f, b, c]


@kernel
def best_split(hist, n_bins, missing_bin, count_bits, g_scale, h_scale, l2, gamma, min_child_weight, min_child_rows,
               allowed, out):
    """The split of one node with the largest gain, from its histogram, as the XGBoost paper scores it:
    gain = (G_L^2 / (H_L + l2) + G_R^2 / (H_R + l2) - G^2 / (H + l2)) / 2 - gamma.

    Bins 0..t go left; the missing bin goes to the side that gains more (left on a tie).  ``allowed[f]`` is 0 for
    features this tree does not use (colsample).  out = (gain, feature, threshold bin, missing goes left, G_L, H_L,
    rows left); gain <= 0 means no split.  Every sum is converted from the exact integer sums, so every rank that
    holds the same histogram finds the same split.
    """
    mask = (np.int64(1) << count_bits) - 1
    F = hist.shape[0]
    best_gain, best_f, best_t, best_left = 0.0, -1, -1, 1
    best_gl, best_hl, best_nl = 0.0, 0.0, 0.0
    for f in range(F):
        if allowed[f] == 0:
            continue
        G, P = np.int64(0), np.int64(0)
        for b in range(n_bins[f]):
            G += hist[f, b, GRAD]
            P += hist[f, b, PACKED]
        Gm, Pm = hist[f, missing_bin, GRAD], hist[f, missing_bin, PACKED]
        N, Nm = P & mask, Pm & mask
        G_all = (G + Gm) * g_scale
        H_all = ((P >> count_bits) + (Pm >> count_bits)) * h_scale
        parent = G_all * G_all / (H_all + l2)
        gl, pl = np.int64(0), np.int64(0)
        for t in range(n_bins[f] - 1):
            gl += hist[f, t, GRAD]
            pl += hist[f, t, PACKED]
            for side in range(2):  # 0: missing goes left, 1: right
                lg, lp = (gl + Gm, pl + Pm) if side == 0 else (gl, pl)
                ln = lp & mask
                rn = N + Nm - ln
                if ln < min_child_rows or rn < min_child_rows:
                    continue
                GL, HL = lg * g_scale, (lp >> count_bits) * h_scale
                GR, HR = G_all - GL, H_all - HL
                if HL < min_child_weight or HR < min_child_weight:
                    continue
                gain = 0.5 * (GL * GL / (HL + l2) + GR * GR / (HR + l2) - parent) - gamma
                if gain > best_gain:
                    best_gain, best_f, best_t, best_left = gain, f, t, 1 - side
                    best_gl, best_hl, best_nl = GL, HL, float(ln)
                if Nm == 0:
                    break  # nothing missing: both sides score the same
    out[0], out[1], out[2], out[3] = best_gain, best_f, best_t, best_left
    out[4], out[5], out[6] = best_gl, best_hl, best_nl


@kernel
def build_class_histogram(binned_rows, rows, start, stop, labels, weights, hist):
    """A classification forest's node histogram: hist[f, b, k] = the weights of rows[start:stop] of class k in bin
    b of feature f, hist[f, b, K] = how many rows (K classes, K = hist.shape[2] - 1).  Integers: exact sums."""
    hist[:] = 0
    classes = hist.shape[2] - 1
    for r in range(start, stop):
        i = rows[r]
        k, w = labels[i], weights[i]
        line = binned_rows[i]
        for f in range(line.shape[0]):
            b = line[f]
            hist[f, b, k] += w
            hist[f, b, classes] += 1


@inline_kernel
def _purity(counts, weight):
    """sum over classes of counts^2 / weight: weight times (1 - Gini impurity), the quantity a Gini split raises."""
    total = 0.0
    for k in range(counts.shape[0]):
        total += counts[k] * counts[k]
    return total / weight if weight > 0 else 0.0


@kernel
def best_gini_split(hist, n_bins, missing_bin, min_child_rows, min_child_weight, allowed, left, out):
    """The split of one node with the largest weighted Gini decrease (CART's, as scikit-learn's forests score it):
    gain = (W_L (1 - Gini_L) + W_R (1 - Gini_R) - W (1 - Gini)) / 2 from the class counts of
    build_class_histogram.  Bins 0..t go left; the missing bin to the side that gains more (left on a tie).
    ``left`` is scratch of K floats.  out as best_split's (gain, feature, threshold bin, missing left, 0, W_L, rows
    left); gain <= 0: no split."""
    K = hist.shape[2] - 1
    best_gain, best_f, best_t, best_left, best_wl, best_nl = 0.0, -1, -1, 1, 0.0, 0.0
    total = np.empty(K)
    for f in range(hist.shape[0]):
        if allowed[f] == 0:
            continue
        total[:] = 0.0
        N = 0
        for b in range(n_bins[f]):
            for k in range(K):
                total[k] += hist[f, b, k]
            N += hist[f, b, K]
        for k in range(K):
            total[k] += hist[f, missing_bin, k]
        Nm = hist[f, missing_bin, K]
        W = total.sum()
        parent = _purity(total, W)
        left[:] = 0.0
        nl = 0
        for t in range(n_bins[f] - 1):
            for k in range(K):
                left[k] += hist[f, t, k]
            nl += hist[f, t, K]
            for side in range(2):  # 0: missing goes left, 1: right
                ln = nl + Nm if side == 0 else nl
                if ln < min_child_rows or N + Nm - ln < min_child_rows:
                    continue
                wl, score = 0.0, 0.0
                for k in range(K):
                    c = left[k] + (hist[f, missing_bin, k] if side == 0 else 0.0)
                    wl += c
                    score += c * c
                wr = W - wl
                if wl < min_child_weight or wr < min_child_weight:
                    continue
                right_score = 0.0
                for k in range(K):
                    c = total[k] - left[k] - (hist[f, missing_bin, k] if side == 0 else 0.0)
                    right_score += c * c
                gain = 0.5 * (score / wl + right_score / wr - parent)
                if gain > best_gain:
                    best_gain, best_f, best_t, best_left, best_wl, best_nl = gain, f, t, 1 - side, wl, float(ln)
                if Nm == 0:
                    break
    out[0], out[1], out[2], out[3] = best_gain, best_f, best_t, best_left
    out[4], out[5], out[6] = 0.0, best_wl, best_nl


@kernel
def partition(binned, rows, start, stop, feature, threshold, missing_bin, missing_left, scratch):
    """Reorder rows[start:stop] so that those going left (bin <= threshold, or missing when missing_left) come
    first, each side in its original order; returns where the right side starts."""
    left = start
    right = 0
    for r in range(start, stop):
        i = rows[r]
        b = binned[feature, i]
        goes_left = (missing_left != 0) if b == missing_bin else b <= threshold
        if goes_left:
            rows[left] = i
            left += 1
        else:
            scratch[right] = i
            right += 1
    for r in range(right):
        rows[left + r] = scratch[r]
    return left


@kernel
def add_leaf_values(rows, leaves, value, scores, column):
    """scores[i, column] += the value of row i's leaf, for the rows a tree was grown on: leaves[j] = (node, start,
    stop), each leaf's rows being rows[start:stop]."""
    for j in range(leaves.shape[0]):
        v = value[leaves[j, 0]]
        for r in range(leaves[j, 1], leaves[j, 2]):
            scores[rows[r], column] += v


@inline_kernel
def _next(node, missing, goes_left, missing_left, left, right):
    """The child a row goes to: a missing value where the split sends it, else left when its test holds."""
    if missing:
        return left[node] if missing_left[node] else right[node]
    return left[node] if goes_left else right[node]


@kernel
def predict_raw(X, feature, threshold, missing_left, left, right, value, scores, column):
    """scores[i, column] += the tree's leaf value for row X[i] (raw features: x <= threshold goes left, NaN as
    missing_left says); a node with feature -1 is a leaf."""
    for i in range(X.shape[0]):
        node = 0
        while feature[node] >= 0:
            x = X[i, feature[node]]
            node = _next(node, x != x, x <= threshold[node], missing_left, left, right)
        scores[i, column] += value[node]


@kernel
def predict_binned(binned, missing_bin, feature, threshold_bin, missing_left, left, right, value, scores, column):
    """scores[i, column] += the tree's leaf value for binned row i (the training rows, binned once)."""
    for i in range(binned.shape[1]):
        node = 0
        while feature[node] >= 0:
            b = binned[feature[node], i]
            node = _next(node, b == missing_bin, b <= threshold_bin[node], missing_left, left, right)
        scores[i, column] += value[node]


@inline_kernel
def _row_hash(seed, tree, place, salt):
    """splitmix64 of (seed, tree, place, salt): a row's draw for one tree, whichever rank holds the row."""
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(tree) * np.uint64(0xBF58476D1CE4E5B9) \
        + np.uint64(place) * np.uint64(0x94D049BB133111EB) + np.uint64(salt)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


SUBSAMPLE_SALT, BOOTSTRAP_SALT = 0, 0x5851F42D4C957F2D  # a row's subsampling and bootstrap draws are independent
SPLIT_SALT = 0x14057B7EF767814F  # a node's feature draw


@kernel
def varying_features(hist, n_bins, missing_bin, channel, mask, allowed, out):
    """out[f] = allowed[f] and the node's rows of feature f fall in two bins or more (the missing bin one of
    them): the features a split could use.  A bin's rows are hist[f, b, channel] & mask."""
    for f in range(hist.shape[0]):
        seen = 0
        if allowed[f]:
            for b in range(n_bins[f]):
                if hist[f, b, channel] & mask:
                    seen += 1
            if hist[f, missing_bin, channel] & mask:
                seen += 1
        out[f] = 1 if seen > 1 else 0


@kernel
def split_features(seed, tree, node, allowed, take, pool, out):
    """out[f] = 1 for ``take`` features drawn without replacement from those ``allowed`` (a partial Fisher-Yates
    shuffle driven by the hash of (seed, tree, node)): the features one node of a forest's tree may split on.
    ``pool`` is scratch of at least len(allowed)."""
    usable = 0
    for f in range(allowed.shape[0]):
        out[f] = 0
        if allowed[f]:
            pool[usable] = f
            usable += 1
    take = min(take, usable)
    for j in range(take):
        z = _row_hash(seed, tree, node, SPLIT_SALT + np.uint64(j))
        pick = j + np.int64(z % np.uint64(usable - j))
        pool[j], pool[pick] = pool[pick], pool[j]
        out[pool[j]] = 1


@kernel
def sampled_rows(seed, tree, places, fraction, out):
    """The rows i of this participant that a tree with row subsampling uses: those whose splitmix64 hash of
    (seed, tree, places[i]) falls below ``fraction``; returns how many (in out[:count]).  places[i] is the row's
    place among the job's rows, so a row is in or out whichever rank holds it."""
    count = 0
    threshold = np.uint64(fraction * 18446744073709551615.0) if fraction < 1.0 else np.uint64(0xFFFFFFFFFFFFFFFF)
    for i in range(places.shape[0]):
        if _row_hash(seed, tree, places[i], SUBSAMPLE_SALT) <= threshold:
            out[count] = i
            count += 1
    return count


@kernel
def poisson_weights(seed, tree, places, out):
    """out[i] = a Poisson(1) draw for row i in tree ``tree`` (the bootstrap of a random forest, as Oza and
    Russell's online bagging draws it: a row's count among n draws with replacement tends to Poisson(1)), by
    inversion of a uniform from the hash of (seed, tree, places[i]): the same weight whichever rank or client
    holds the row."""
    for i in range(places.shape[0]):
        u = np.float64(_row_hash(seed, tree, places[i], BOOTSTRAP_SALT) >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        k, term = 0, 0.36787944117144233  # P(0) = 1/e
        cdf = term
        while u >= cdf and k < 20:
            k += 1
            term /= k
            cdf += term
        out[i] = k

"""Leaf-wise growth of one histogram tree (LightGBM's order: always split the leaf whose best split gains most).

Every node's histogram is summed over the ranks (or clients) by the pool (mpifl.trees.pools) before its split is
chosen, so every participant grows the same tree from the same integers; only the smaller child's histogram is
built from rows, its sibling's is the parent's minus it.  Where one participant alone decides (the federated
server, which alone sees the sums), the others hold their own histograms and take its splits and leaf values
from the pool.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from mpifl.trees import kernels as K
from mpifl.trees import variants
from mpifl.trees.pools import Alone

SPLIT_FIELDS = 8  # best_split's out (gain, feature, threshold bin, missing left, G_L, H_L, rows left), then rows
ROWS = 7  # the node's rows over every participant


@dataclass(frozen=True)
class TreeParams:
    max_leaves: int = 31
    max_depth: int = 0  # 0: no limit
    l2: float = 1.0
    gamma: float = 0.0
    min_child_weight: float = 1e-3
    min_child_rows: int = 20
    lr: float = 0.1
    split_features: float = 1.0  # the share of the tree's features each split may use, drawn per node (a forest's)
    seed: int = 0  # with (tree, node), the draw of a split's features


@dataclass
class Tree:
    """A grown tree as flat arrays (node 0 is the root; feature -1 marks a leaf)."""

    feature: np.ndarray  # int64
    threshold_bin: np.ndarray  # int64: bins <= this go left
    threshold: np.ndarray  # float64: the same test on raw values (x <= the bin's upper edge goes left)
    missing_left: np.ndarray  # int8
    left: np.ndarray  # int64
    right: np.ndarray  # int64
    value: np.ndarray  # float64: a leaf's output (shrunk by the learning rate)

    @property
    def leaves(self) -> int:
        return int((self.feature < 0).sum())


@dataclass
class _Leaf:
    node: int
    start: int
    stop: int
    depth: int
    hist: np.ndarray
    split: np.ndarray  # best_split's out


def split_sample(seed: int, tree: int, node: int, allowed: np.ndarray, fraction: float) -> np.ndarray:
    """The features one node may split on: round(fraction * F) (at least one) of ``allowed``, drawn from (seed,
    tree, node), as a random forest draws them at every split (Breiman 2001)."""
    out = np.empty_like(allowed)
    K.split_features(seed, tree, node, allowed, max(1, int(round(fraction * allowed.size))),
                     np.empty(allowed.size, dtype=np.int64), out)
    return out


class Gradients:
    """Histograms of fixed-point gradients gq * g_scale and Hessians packed with a row count each (hp >>
    count_bits times h_scale; mpifl.trees.kernels), split as the XGBoost paper scores them: boosting's trees, and
    a forest's for one target."""

    outputs = 1

    def __init__(self, gq: np.ndarray, hp: np.ndarray, g_scale: float, h_scale: float, count_bits: int):
        self.gq, self.hp, self.g_scale, self.h_scale, self.count_bits = gq, hp, g_scale, h_scale, count_bits

    def channels(self, grower: TreeGrower) -> int:
        return K.CHANNELS

    def histogram(self, grower: TreeGrower, rows, start, stop, hist) -> None:
        if (stop - start) * K.SPARSE_NODE < grower.binned.shape[1]:
            K.build_histogram_by_rows(grower.binned_rows, rows, start, stop, self.gq, self.hp, hist)
        elif grower.dense is None:  # the fit's first large node: time the variants on it (mpifl.trees.variants)
            grower.dense, grower.dense_seconds = variants.fastest(grower, rows, start, stop, self.gq, self.hp, hist)
        else:
            variants.VARIANTS[grower.dense](grower, rows, start, stop, self.gq, self.hp, hist)

    def split(self, grower: TreeGrower, hist, allowed, out) -> None:
        p = grower.params
        K.best_split(hist, grower.n_bins, grower.missing_bin, grower.count_bits, self.g_scale, self.h_scale, p.l2,
                     p.gamma, p.min_child_weight, p.min_child_rows, allowed, out)

    def rows(self, grower: TreeGrower, hist) -> int:
        return int((hist[0, :, K.PACKED] & grower.mask).sum())

    def varying(self, grower: TreeGrower, hist, allowed) -> np.ndarray:
        out = np.empty_like(allowed)
        K.varying_features(hist, grower.n_bins, grower.missing_bin, K.PACKED, grower.mask, allowed, out)
        return out

    def subtract(self, grower: TreeGrower, parent, child, out) -> None:
        """out = parent - child; where the sums are noised (the private server's) each field is floored at 0
        apart, so that a noised count never borrows from the Hessian packed above it."""
        if grower.pool.privacy is None or not grower.pool.decides:
            K.subtract(parent, child, out)
            return
        bits, mask = grower.count_bits, grower.mask
        out[:, :, K.GRAD] = parent[:, :, K.GRAD] - child[:, :, K.GRAD]
        h = np.maximum((parent[:, :, K.PACKED] >> bits) - (child[:, :, K.PACKED] >> bits), 0)
        n = np.maximum((parent[:, :, K.PACKED] & mask) - (child[:, :, K.PACKED] & mask), 0)
        out[:, :, K.PACKED] = (h << bits) | n

    def add_noise(self, hist, privacy, *key: int) -> None:
        """The server's Gaussian noise on a summed histogram (mpifl.trees.privacy): on each bin's gradient sum,
        Hessian sum and row count, at the scale of the clip C, C and 1; the Hessian and count floored at 0 and
        kept within their packed fields."""
        from mpifl.trees.privacy import histogram_sensitivity

        bits = self.count_bits
        sigma = privacy.noise_multiplier * histogram_sensitivity(hist.shape[0])
        xi = privacy.noise((3, *hist.shape[:2]), *key)
        top = float(2**62)
        g = hist[:, :, K.GRAD] + np.rint(np.clip(sigma * privacy.clip / self.g_scale * xi[0], -top, top))
        h = (hist[:, :, K.PACKED] >> bits) + np.rint(np.clip(sigma * privacy.clip / self.h_scale * xi[1], -top, top))
        n = (hist[:, :, K.PACKED] & ((1 << bits) - 1)) + np.rint(sigma * xi[2])
        hist[:, :, K.GRAD] = np.clip(g, -top, top).astype(np.int64)
        h = np.clip(h, 0, 2.0 ** (62 - bits) - 1).astype(np.int64)
        n = np.clip(n, 0, (1 << bits) - 1).astype(np.int64)
        hist[:, :, K.PACKED] = (h << bits) | n

    def values(self, grower: TreeGrower, hist) -> np.ndarray:
        p = grower.params
        G = hist[0, :, K.GRAD].sum() * self.g_scale
        H = (hist[0, :, K.PACKED] >> grower.count_bits).sum() * self.h_scale
        return np.array([-p.lr * G / (H + p.l2) if H + p.l2 > 0 else 0.0])  # H: 0 only where noise floored it


class ClassCounts:
    """A K-class forest's histograms: each class's weighted rows and the row count per bin, split by the Gini
    decrease (mpifl.trees.kernels.best_gini_split); a leaf holds the K classes' weighted shares."""

    def __init__(self, labels: np.ndarray, weights: np.ndarray, classes: int):
        self.labels, self.weights, self.outputs = labels, weights, classes
        self.scratch = np.empty(classes)

    def channels(self, grower: TreeGrower) -> int:
        return self.outputs + 1

    def histogram(self, grower: TreeGrower, rows, start, stop, hist) -> None:
        K.build_class_histogram(grower.binned_rows, rows, start, stop, self.labels, self.weights, hist)

    def split(self, grower: TreeGrower, hist, allowed, out) -> None:
        p = grower.params
        K.best_gini_split(hist, grower.n_bins, grower.missing_bin, p.min_child_rows, p.min_child_weight, allowed,
                          self.scratch, out)

    def rows(self, grower: TreeGrower, hist) -> int:
        return int(hist[0, :, self.outputs].sum())

    def subtract(self, grower: TreeGrower, parent, child, out) -> None:
        K.subtract(parent, child, out)

    def varying(self, grower: TreeGrower, hist, allowed) -> np.ndarray:
        out = np.empty_like(allowed)
        K.varying_features(hist, grower.n_bins, grower.missing_bin, self.outputs, -1, allowed, out)
        return out

    def values(self, grower: TreeGrower, hist) -> np.ndarray:
        counts = hist[0, :, : self.outputs].sum(axis=0).astype(np.float64)
        return grower.params.lr * counts / counts.sum()


class TreeGrower:
    """Grows trees on one participant's binned rows (feature-major: (F, n)); ``pool`` sums its histograms with
    the other participants' (mpifl.trees.pools; alone by default)."""

    def __init__(self, binned: np.ndarray, n_bins: np.ndarray, missing_bin: int, params: TreeParams,
                 count_bits: int, pool: Alone | None = None):
        self.binned, self.n_bins, self.missing_bin, self.params = binned, n_bins, missing_bin, params
        self.pool = pool or Alone()
        self.count_bits, self.mask = count_bits, (1 << count_bits) - 1
        self.scratch = np.empty(binned.shape[1], dtype=np.int64)
        self.ordered = np.empty((2, K.TILE), dtype=np.int64)
        self.binned_rows = np.ascontiguousarray(binned.T)  # row-major too, for the sparse nodes' histograms
        self.dense, self.dense_seconds = None, {}  # the large nodes' histogram variant, once timed

    def grow(self, rows: np.ndarray, criterion: Gradients | ClassCounts, allowed: np.ndarray, edges: np.ndarray,
             tree_id: int = 0) -> tuple[list[Tree], np.ndarray]:
        """One tree on ``rows`` (reordered in place, leaf by leaf), its histograms and splits the
        ``criterion``'s; a split's raw threshold is its bin's upper edge.  Returns the tree (one per output of the
        criterion: the same nodes, each output's leaf values) and its leaves as rows (node, start, stop): each
        leaf's rows are rows[start:stop]."""
        p = self.params
        self.tree_id, self.criterion = tree_id, criterion
        self.shape = (self.binned.shape[0], self.missing_bin + 1, criterion.channels(self))
        feature, threshold, missing_left, left, right = [-1], [-1], [0], [-1], [-1]
        root = self._histogram(rows, 0, rows.size)
        self.pool.sum_histogram(root, criterion)
        first = self._leaf(0, 0, rows.size, 0, root, allowed)
        self.pool.decide(first.split)
        open_leaves = [(-first.split[0], 0, first)]  # a heap: the largest gain first, then the lowest node
        while len(open_leaves) < p.max_leaves and open_leaves[0][0] < 0.0:
            leaf = heapq.heappop(open_leaves)[2]
            f, t, miss_left = int(leaf.split[1]), int(leaf.split[2]), int(leaf.split[3])
            mid = K.partition(self.binned, rows, leaf.start, leaf.stop, f, t, self.missing_bin, miss_left,
                              self.scratch)
            global_left, global_all = int(leaf.split[6]), int(leaf.split[ROWS])
            small_is_left = global_left <= global_all - global_left
            small = self._histogram(rows, leaf.start, mid) if small_is_left else self._histogram(rows, mid, leaf.stop)
            self.pool.sum_histogram(small, criterion)
            large = np.empty_like(small)
            criterion.subtract(self, leaf.hist, small, large)
            hist_left, hist_right = (small, large) if small_is_left else (large, small)
            node_l, node_r = len(feature), len(feature) + 1
            feature[leaf.node], threshold[leaf.node], missing_left[leaf.node] = f, t, miss_left
            left[leaf.node], right[leaf.node] = node_l, node_r
            for _ in range(2):
                feature.append(-1), threshold.append(-1), missing_left.append(0), left.append(-1), right.append(-1)
            children = [self._leaf(node_l, leaf.start, mid, leaf.depth + 1, hist_left, allowed),
                        self._leaf(node_r, mid, leaf.stop, leaf.depth + 1, hist_right, allowed)]
            decided = np.concatenate([children[0].split, children[1].split])
            self.pool.decide(decided)
            children[0].split, children[1].split = decided[:SPLIT_FIELDS], decided[SPLIT_FIELDS:]
            for child in children:
                heapq.heappush(open_leaves, (-child.split[0], child.node, child))
        leaves = sorted((entry[2] for entry in open_leaves), key=lambda leaf: leaf.node)
        outputs = np.zeros((len(leaves), criterion.outputs))
        if self.pool.decides:
            for j, leaf in enumerate(leaves):
                outputs[j] = criterion.values(self, leaf.hist)
        self.pool.decide(outputs)
        values = np.zeros((len(feature), criterion.outputs))
        for j, leaf in enumerate(leaves):
            values[leaf.node] = outputs[j]
        feature_ = np.array(feature, dtype=np.int64)
        threshold_ = np.array(threshold, dtype=np.int64)
        raw = np.where(feature_ >= 0, edges[np.maximum(feature_, 0), np.maximum(threshold_, 0)], np.nan)
        nodes = (feature_, threshold_, raw, np.array(missing_left, dtype=np.int8), np.array(left, dtype=np.int64),
                 np.array(right, dtype=np.int64))
        trees = [Tree(*nodes, np.ascontiguousarray(values[:, k])) for k in range(criterion.outputs)]
        return trees, np.array([(leaf.node, leaf.start, leaf.stop) for leaf in leaves], dtype=np.int64)

    def _histogram(self, rows, start, stop) -> np.ndarray:
        hist = np.empty(self.shape, dtype=np.int64)
        self.criterion.histogram(self, rows, start, stop, hist)
        return hist

    def _leaf(self, node, start, stop, depth, hist, allowed) -> _Leaf:
        p = self.params
        split = np.zeros(SPLIT_FIELDS)
        if not self.pool.decides:
            return _Leaf(node, start, stop, depth, hist, split)  # the decision comes from the pool
        split[ROWS] = self.criterion.rows(self, hist)
        if not (p.max_depth and depth >= p.max_depth):
            if p.split_features < 1.0:
                # drawn among the features that vary in the node, and where none of those splits, the others:
                # scikit-learn's forests search on until a split is found
                varying = self.criterion.varying(self, hist, allowed)
                drawn = split_sample(p.seed, self.tree_id, node, varying, p.split_features)
                self.criterion.split(self, hist, drawn, split[:ROWS])
                if split[0] <= 0.0 and (varying > drawn).any():
                    self.criterion.split(self, hist, varying - drawn, split[:ROWS])
            else:
                self.criterion.split(self, hist, allowed, split[:ROWS])
        return _Leaf(node, start, stop, depth, hist, split)

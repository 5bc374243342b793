"""Leaf-wise growth of one histogram tree (LightGBM's order: always split the leaf whose best split gains most).

Every node's histogram is summed over the ranks (or clients) by the pool (mpifl.trees.pools) before its split is
chosen, so every participant grows the same tree from the same integers; only the smaller child's histogram is
built from rows, its sibling's is the parent's minus it.  Where one participant alone decides (the federated
server, which alone sees the sums), the others hold their own histograms and take its splits and leaf values
from the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.trees import kernels as K
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
    """The features one node may split on: round(fraction * F) (at least one) of the tree's ``allowed``, drawn
    from (seed, tree, node), as a random forest draws them at every split (Breiman 2001)."""
    out = np.empty_like(allowed)
    K.split_features(seed, tree, node, allowed, max(1, int(round(fraction * allowed.size))),
                     np.empty(allowed.size, dtype=np.int64), out)
    return out


class TreeGrower:
    """Grows trees on one participant's binned rows (feature-major: (F, n)); ``pool`` sums its histograms with
    the other participants' (mpifl.trees.pools; alone by default)."""

    def __init__(self, binned: np.ndarray, n_bins: np.ndarray, missing_bin: int, params: TreeParams,
                 count_bits: int, pool: Alone | None = None):
        self.binned, self.n_bins, self.missing_bin, self.params = binned, n_bins, missing_bin, params
        self.pool = pool or Alone()
        self.count_bits, self.mask = count_bits, (1 << count_bits) - 1
        self.shape = (binned.shape[0], missing_bin + 1, K.CHANNELS)
        self.scratch = np.empty(binned.shape[1], dtype=np.int64)
        self.ordered = np.empty((2, K.TILE), dtype=np.int64)
        self.binned_rows = np.ascontiguousarray(binned.T)  # row-major too, for the sparse nodes' histograms

    def grow(self, rows: np.ndarray, gq: np.ndarray, hp: np.ndarray, g_scale: float, h_scale: float,
             allowed: np.ndarray, edges: np.ndarray, tree_id: int = 0) -> tuple[Tree, np.ndarray]:
        """One tree on ``rows`` (reordered in place, leaf by leaf) from fixed-point gradients gq * g_scale and
        Hessians packed with a row count each (hp >> count_bits times h_scale; mpifl.trees.kernels); a split's raw
        threshold is its bin's upper edge.  Returns the tree and its leaves
        as rows (node, start, stop): each leaf's rows are rows[start:stop]."""
        p = self.params
        self.tree_id = tree_id
        feature, threshold, missing_left, left, right, value = [-1], [-1], [0], [-1], [-1], [0.0]
        root = self._histogram(rows, 0, rows.size, gq, hp)
        self.pool.sum_histogram(root)
        leaves = [self._leaf(0, 0, rows.size, 0, root, g_scale, h_scale, allowed)]
        self.pool.decide(leaves[0].split)
        while len(leaves) < p.max_leaves:
            best = max(range(len(leaves)), key=lambda j: (leaves[j].split[0], -leaves[j].node))
            leaf = leaves[best]
            if leaf.split[0] <= 0.0:
                break
            f, t, miss_left = int(leaf.split[1]), int(leaf.split[2]), int(leaf.split[3])
            mid = K.partition(self.binned, rows, leaf.start, leaf.stop, f, t, self.missing_bin, miss_left,
                              self.scratch)
            global_left, global_all = int(leaf.split[6]), int(leaf.split[ROWS])
            small_is_left = global_left <= global_all - global_left
            small = self._histogram(rows, leaf.start, mid, gq, hp) if small_is_left else \
                self._histogram(rows, mid, leaf.stop, gq, hp)
            self.pool.sum_histogram(small)
            large = np.empty_like(small)
            K.subtract(leaf.hist, small, large)
            hist_left, hist_right = (small, large) if small_is_left else (large, small)
            node_l, node_r = len(feature), len(feature) + 1
            feature[leaf.node], threshold[leaf.node], missing_left[leaf.node] = f, t, miss_left
            left[leaf.node], right[leaf.node] = node_l, node_r
            for _ in range(2):
                feature.append(-1), threshold.append(-1), missing_left.append(0), left.append(-1), right.append(-1)
                value.append(0.0)
            children = [self._leaf(node_l, leaf.start, mid, leaf.depth + 1, hist_left, g_scale, h_scale, allowed),
                        self._leaf(node_r, mid, leaf.stop, leaf.depth + 1, hist_right, g_scale, h_scale, allowed)]
            decided = np.stack([children[0].split, children[1].split])
            self.pool.decide(decided)
            children[0].split, children[1].split = decided
            leaves[best:best + 1] = children
        outputs = np.zeros(len(leaves))
        if self.pool.decides:
            for j, leaf in enumerate(leaves):
                G = leaf.hist[0, :, K.GRAD].sum() * g_scale
                H = (leaf.hist[0, :, K.PACKED] >> self.count_bits).sum() * h_scale
                outputs[j] = -p.lr * G / (H + p.l2)
        self.pool.decide(outputs)
        for j, leaf in enumerate(leaves):
            value[leaf.node] = outputs[j]
        feature_ = np.array(feature, dtype=np.int64)
        threshold_ = np.array(threshold, dtype=np.int64)
        raw = np.where(feature_ >= 0, edges[np.maximum(feature_, 0), np.maximum(threshold_, 0)], np.nan)
        tree = Tree(feature_, threshold_, raw, np.array(missing_left, dtype=np.int8), np.array(left, dtype=np.int64),
                    np.array(right, dtype=np.int64), np.array(value))
        return tree, np.array([(leaf.node, leaf.start, leaf.stop) for leaf in leaves], dtype=np.int64)

    def _histogram(self, rows, start, stop, gq, hp) -> np.ndarray:
        hist = np.empty(self.shape, dtype=np.int64)
        if (stop - start) * K.SPARSE_NODE < self.binned.shape[1]:
            K.build_histogram_by_rows(self.binned_rows, rows, start, stop, gq, hp, hist)
        else:
            K.build_histogram(self.binned, rows, start, stop, gq, hp, self.ordered, hist)
        return hist

    def _leaf(self, node, start, stop, depth, hist, g_scale, h_scale, allowed) -> _Leaf:
        p = self.params
        split = np.zeros(SPLIT_FIELDS)
        if not self.pool.decides:
            return _Leaf(node, start, stop, depth, hist, split)  # the decision comes from the pool
        split[ROWS] = (hist[0, :, K.PACKED] & self.mask).sum()
        if not (p.max_depth and depth >= p.max_depth):
            if p.split_features < 1.0:
                allowed = split_sample(p.seed, self.tree_id, node, allowed, p.split_features)
            K.best_split(hist, self.n_bins, self.missing_bin, self.count_bits, g_scale, h_scale, p.l2, p.gamma,
                         p.min_child_weight, p.min_child_rows, allowed, split[:ROWS])
        return _Leaf(node, start, stop, depth, hist, split)

"""Gradient boosting of histogram trees: the bins from merged sketches, fixed-point gradients, and the boosting
loop over one participant's binned rows, whose sums its pool (mpifl.trees.pools) combines with the others'."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mpifl.errors import DataError
from mpifl.rng import Purpose, stream
from mpifl.trees import gradients as G
from mpifl.trees import kernels as K
from mpifl.trees.binning import SKETCH_BUCKETS, count_buckets, edges_from_counts
from mpifl.trees.grower import ClassCounts, Gradients, Tree, TreeGrower, TreeParams
from mpifl.trees.kernels import bin_rows, poisson_weights, sampled_rows
from mpifl.trees.losses import Averaged, Loss, shares_of
from mpifl.trees.pools import Alone
from mpifl.trees.privacy import COUNTS, SKETCH

FIXED_BITS = 62  # a node's summed fixed-point gradients stay below 2^62 in magnitude
MAX_EXPONENT = 1000


def fixed_exponent(largest: float, count: int, bits: int = FIXED_BITS) -> int:
    """The largest power of two 2^e such that ``count`` values of magnitude at most ``largest``, each times 2^e,
    sum below 2^bits (at most 2^1000: 2^e stays a finite double, for gradients that are all but zero)."""
    return 0 if largest <= 0.0 else min(bits - math.frexp(largest * count)[1], MAX_EXPONENT)


def fixed_point(values: np.ndarray, largest: float, count: int, bits: int = FIXED_BITS) -> tuple[np.ndarray, float]:
    """values as int64 multiples of a power of two small enough that ``count`` of them, each at most ``largest``
    in magnitude, sum below 2^bits: (the integers, the scale that turns them back)."""
    exponent = fixed_exponent(largest, count, bits)
    out = np.empty(values.shape, dtype=np.int64)
    G.to_fixed(np.ascontiguousarray(values, dtype=np.float64), exponent, out)
    return out, math.ldexp(1.0, -exponent)


@dataclass(frozen=True)
class BoostParams:
    rounds: int = 100
    bins: int = 255
    subsample: float = 1.0
    colsample: float = 1.0
    seed: int = 0
    tree: TreeParams = TreeParams()
    bootstrap: bool = True  # a forest's trees draw Poisson(1) row weights; False: every row once


@dataclass
class Booster:
    """Boosted trees: the bin edges, a base score per output, then each round's trees (one per output)."""

    edges: np.ndarray  # (F, bins - 1), padded with +inf
    n_edges: np.ndarray  # (F,)
    base: np.ndarray  # (outputs,)
    loss: str  # the task: linear, logistic or softmax
    trees: list[list[Tree]] = field(default_factory=list)

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """(n, outputs) margins: the base plus every tree's leaf value, from raw rows (NaN: missing)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.edges.shape[0]:
            raise DataError(f"The model was trained on rows of {self.edges.shape[0]} features; got shape {X.shape}.")
        scores = np.tile(self.base, (X.shape[0], 1))
        for round_trees in self.trees:
            for k, t in enumerate(round_trees):
                K.predict_raw(X, t.feature, t.threshold, t.missing_left, t.left, t.right, t.value, scores, k)
        return scores


    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted label of each row (the class, or the value for squared error)."""
        scores = self.raw_scores(X)
        if self.loss in ("logistic", "forest_logistic"):
            return (scores[:, 0] > (0.0 if self.loss == "logistic" else 0.5)).astype(np.float64)
        if self.loss in ("softmax", "forest_softmax"):
            return scores.argmax(axis=1).astype(np.float64)
        return scores[:, 0]

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """(n, classes) class probabilities of a classifier (a forest's: its trees' mean shares)."""
        scores = self.raw_scores(X)
        if self.loss == "logistic":
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - p, p])
        if self.loss == "softmax":
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        if self.loss == "forest_logistic":
            p = np.clip(scores[:, 0], 0.0, 1.0)
            return np.column_stack([1.0 - p, p])
        if self.loss == "forest_softmax":
            return shares_of(scores)
        raise DataError("A regression model has no class probabilities.")


def sketch_edges(X: np.ndarray, bins: int, pool: Alone) -> tuple[np.ndarray, np.ndarray]:
    """Every participant's bin edges from the summed sketches of their rows (mpifl.trees.binning); a private
    job's between the public bounds, from noised counts (mpifl.trees.privacy)."""
    private = pool.privacy
    if private is not None:
        lo, hi = np.full(X.shape[1], private.low), np.full(X.shape[1], private.high)
        counts = np.empty((X.shape[1], SKETCH_BUCKETS), dtype=np.int64)
        count_buckets(np.clip(X, private.low, private.high), lo, hi, counts)
        pool.release(counts, math.sqrt(X.shape[1]), SKETCH)  # the noised counts are public: every rank bins
        return edges_from_counts(counts, lo, hi, bins)
    lo = np.fmin.reduce(X, axis=0, initial=np.inf)  # NaN skipped; a feature with no value here: +inf
    hi = np.fmax.reduce(X, axis=0, initial=-np.inf)
    bounds = np.concatenate([-lo, hi])
    pool.maximum(bounds)
    lo, hi = -bounds[: X.shape[1]], bounds[X.shape[1]:]
    missing = np.flatnonzero(lo > hi)  # no participant has a value of these
    if missing.size:
        raise DataError(f"Feature{'s' if missing.size > 1 else ''} {', '.join(map(str, missing[:10]))} "
                        f"{'are' if missing.size > 1 else 'is'} missing (NaN) on every training row; drop "
                        f"{'them' if missing.size > 1 else 'it'}.", collective=True)
    counts = np.empty((X.shape[1], SKETCH_BUCKETS), dtype=np.int64)
    count_buckets(X, lo, hi, counts)
    return pool.edges(counts, lo, hi, bins)


def fit(X: np.ndarray, y: np.ndarray, loss: Loss, params: BoostParams, pool: Alone | None = None,
        first_row: int | np.ndarray = 0, start: Booster | None = None,
        after_round: Callable[[int, Booster], None] | None = None,
        taking_part: Callable[[int], np.ndarray] | None = None, told: dict | None = None) -> Booster:
    """Boosted trees on this participant's rows X, y (a random forest's, for a forest's task: mpifl.trees.losses);
    every participant calls it together and returns the same booster.  A row's global id (for row subsampling) is first_row + its index, or first_row[i] where an array of
    places is given.  ``start`` resumes a booster whose rounds are done (its trees are replayed on the rows);
    ``after_round(rnd, booster)`` follows each round; ``taking_part(rnd)`` is the mask of the rows round rnd's
    trees see (federated clients sampled per round; None: all).  ``told``, where given, gets the large nodes'
    histogram variant this participant timed and chose (mpifl.trees.variants).  Bad input fails on every
    participant with one message."""
    grows = Bagging if isinstance(loss, Averaged) else Boosting
    boosting = grows(X, y, loss, params, pool or Alone(), first_row, taking_part)
    if start is not None:
        boosting.resume(start)
    for rnd in range(len(boosting.booster.trees), params.rounds):
        boosting.pool.begin_round(rnd)
        boosting.booster.trees.append(boosting.round(rnd))
        if after_round is not None:
            after_round(rnd + 1, boosting.booster)
    if told is not None:
        told.update(histogram_kernel=boosting.grower.dense, histogram_seconds=boosting.grower.dense_seconds)
    return boosting.booster


class Boosting:
    """One participant's side of a fit: its binned rows, their scores, and the buffers a tree reuses."""

    def __init__(self, X: np.ndarray, y: np.ndarray, loss: Loss, params: BoostParams, pool: Alone,
                 first_row: int | np.ndarray, taking_part: Callable[[int], np.ndarray] | None = None):
        self.taking_part = taking_part
        X = np.ascontiguousarray(X, dtype=np.float64)
        self.y = y = np.ascontiguousarray(y, dtype=np.float64)
        pool.agree(lambda: check_rows(X, y, loss))
        n, self.features = X.shape
        self.loss, self.params, self.pool = loss, params, pool
        self.edges, self.n_edges = sketch_edges(X, params.bins, pool)
        labels = max(loss.classes_out, 2)
        sums = np.zeros(labels + 1, dtype=np.int64)  # rows of each class (classification), then all rows
        if loss.classifies:
            sums[:labels] = np.bincount(y.astype(np.int64), minlength=labels)
        sums[-1] = n
        private = pool.privacy
        if private is not None:  # one row moves one class count and the total: sensitivity sqrt(2)
            pool.release(sums, math.sqrt(2.0), COUNTS)
            sums[:-1] = np.maximum(sums[:-1], 1)
        else:
            pool.sum_ints(sums)
        check_sketch(self.edges, self.n_edges, int(sums[-1]), params.bins)
        # the missing bin follows the most bins any feature has: few distinct values, small histograms
        self.missing_bin = int(self.n_edges.max()) + 1
        self.binned = np.empty((self.features, n), dtype=np.uint8 if params.bins < 256 else np.uint16)
        bin_rows(X, self.edges, self.n_edges, self.missing_bin, self.binned)
        # a node's row count fits below the packed Hessian; a private job's noised count, with room to spare
        self.row_bound = int(sums[-1]) if private is None else 2 * int(sums[-1] + 6 * private.noise_multiplier) + 64
        self.count_bits = self.row_bound.bit_length()
        self.grower = TreeGrower(self.binned, self.n_edges + 1, self.missing_bin, params.tree, self.count_bits,
                                 pool)
        y_sum = 0.0 if loss.classifies or private is not None else exact_sum(y, pool)  # private: start from 0
        base = loss.base(y_sum, int(sums[-1]), sums[:-1].astype(np.float64))
        self.booster = Booster(self.edges, self.n_edges, base, loss.name)
        self.scores = np.tile(base, (n, 1))
        self.places = np.asarray(first_row, dtype=np.int64) if np.ndim(first_row) else first_row + np.arange(n)
        self.g, self.h = np.empty((loss.classes_out, n)), np.empty((loss.classes_out, n))
        self.gq, self.hp = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        self.every_row, self.chosen = np.arange(n, dtype=np.int64), np.empty(n, dtype=np.int64)

    def resume(self, start: Booster) -> None:
        """Go on from ``start``'s rounds: its trees replayed on these rows' scores."""
        same_bins = start.n_edges.tolist() == self.n_edges.tolist() and all(
            start.edges[f, :m].tobytes() == self.edges[f, :m].tobytes() for f, m in enumerate(self.n_edges))
        if start.edges.shape[0] != self.features or not same_bins or start.loss != self.loss.name:
            raise DataError("The model to resume from was grown on other bins or another task than these rows "
                            "give.", collective=True)
        self.booster.trees = list(start.trees)
        for round_trees in self.booster.trees:
            for k, t in enumerate(round_trees):
                self._add(t, k, None, None)

    def round(self, rnd: int) -> list[Tree]:
        """One boosting round's trees, one per output, from every output's gradients at the round's start."""
        self.loss.gradients(self.scores, self.y, self.g, self.h)
        mask = self.taking_part(rnd) if self.taking_part is not None else None
        return [self._tree(k, rnd * self.loss.classes_out + k, mask) for k in range(self.loss.classes_out)]

    def _tree(self, k: int, tree_id: int, mask: np.ndarray | None) -> Tree:
        params = self.params
        sampled = params.subsample < 1.0 or mask is not None
        if params.subsample < 1.0:
            rows = self.chosen[: sampled_rows(params.seed, tree_id, self.places, params.subsample, self.chosen)].copy()
        else:
            rows = self.every_row.copy()
        if mask is not None:
            rows = rows[mask[rows]]
        tree, leaves = self._grow(k, tree_id, rows, not sampled)
        self._add(tree, k, None if sampled else rows, leaves)  # sampled: the rows left out still move
        return tree

    def _grow(self, k: int, tree_id: int, rows: np.ndarray, every_row: bool) -> tuple[Tree, np.ndarray]:
        """Output k's tree on ``rows`` (reordered in place) from g[k], h[k], in fixed point scaled to the largest
        of them over every participant's rows."""
        params, pool = self.params, self.pool
        peaks = np.empty(2)
        count = np.array([rows.size], dtype=np.int64)
        if pool.privacy is not None:  # the clip bounds them, and the noised count bounds the rows
            clip = pool.privacy.clip
            np.clip(self.g[k], -clip, clip, out=self.g[k])
            np.clip(self.h[k], 0.0, clip, out=self.h[k])
            peaks[:], count[0] = clip, self.row_bound
        else:
            G.peaks(self.g[k], self.h[k], rows, every_row, peaks)
            pool.maximum(peaks)
            pool.sum_ints(count)
        g_exponent = fixed_exponent(peaks[0], int(count[0]))
        h_exponent = fixed_exponent(peaks[1], int(count[0]), FIXED_BITS - self.count_bits)
        G.to_fixed(self.g[k], g_exponent, self.gq)
        G.to_fixed_packed(self.h[k], h_exponent, self.count_bits, self.hp)
        allowed = feature_sample(params.seed, tree_id, self.features, params.colsample)
        criterion = Gradients(self.gq, self.hp, math.ldexp(1.0, -g_exponent), math.ldexp(1.0, -h_exponent),
                              self.count_bits)
        trees, leaves = self.grower.grow(rows, criterion, allowed, self.edges, tree_id)
        return trees[0], leaves

    def _add(self, tree: Tree, k: int, rows: np.ndarray | None, leaves: np.ndarray | None) -> None:
        """The tree's leaf values into output k's scores: through its leaves' rows, or by walking every row."""
        if rows is not None:
            K.add_leaf_values(rows, leaves, tree.value, self.scores, k)
        else:
            K.predict_binned(self.binned, self.missing_bin, tree.feature, tree.threshold_bin, tree.missing_left,
                             tree.left, tree.right, tree.value, self.scores, k)


class Bagging(Boosting):
    """A random forest (Breiman 2001) on the same bins, histograms and pools as boosting: member ``rnd`` draws
    Poisson(1) weights for the rows from (seed, rnd, the row's place) and grows one tree with them, on its task's
    target (mpifl.trees.losses.Averaged: a regression or two-class forest) or over K classes by the Gini
    decrease; its splits draw their features per node (TreeParams.split_features).  The trees do not depend on
    each other, so no scores are kept."""

    def round(self, rnd: int) -> list[Tree]:
        weights = np.empty(self.y.size, dtype=np.int64)
        if self.params.bootstrap:
            poisson_weights(self.params.seed, rnd, self.places, weights)
        else:
            weights[:] = 1
        rows = self.every_row[weights > 0]
        if self.taking_part is not None:
            rows = rows[self.taking_part(rnd)[rows]]
        if self.loss.gini:  # one tree over the K classes, each leaf their shares
            allowed = feature_sample(self.params.seed, rnd, self.features, self.params.colsample)
            labels = self.y.astype(np.int64)
            return self.grower.grow(rows, ClassCounts(labels, weights, self.loss.classes_out), allowed, self.edges,
                                    rnd)[0]
        w = weights.astype(np.float64)
        np.multiply(self.loss.targets(self.y), -w, out=self.g[0])
        self.h[0] = w
        return [self._grow(0, rnd, rows, False)[0]]


def check_rows(X: np.ndarray, y: np.ndarray, loss: Loss) -> None:
    """This participant's rows: a table, one finite label a row, each label one the task knows."""
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"Trees take rows X (n, features) and labels y (n,); got X {X.shape} and y {y.shape}.")
    if np.isinf(X).any():
        row, col = np.argwhere(np.isinf(X))[0]
        raise DataError(f"Feature {col} of row {row} is infinite; trees take finite values, or NaN for missing.")
    if not np.isfinite(y).all():
        raise DataError(f"Label of row {int(np.flatnonzero(~np.isfinite(y))[0])} is not finite.")
    if loss.classifies:
        classes = max(loss.classes_out, 2)
        bad = (y != np.round(y)) | (y < 0) | (y >= classes)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise DataError(f"Label {float(y[at])!r} of row {at} is not a class of this {loss.name} task "
                            f"(integers 0 to {classes - 1}).")


def check_sketch(edges: np.ndarray, n_edges: np.ndarray, rows: int, bins: int) -> None:
    """What only the merged sketch shows, the same on every participant: features missing on every row, fewer
    rows than bins, nothing to split."""
    if rows < bins:
        raise DataError(f"model.bins = {bins} is more bins than the {rows} training rows; set model.bins below "
                        f"{rows}.", collective=True)
    if not n_edges.any():
        raise DataError("No feature takes two values on the training rows: there is nothing to split on.",
                        collective=True)


def exact_sum(values: np.ndarray, pool: Alone) -> float:
    """The sum of every participant's values, the same whatever their split: fixed point, summed as integers."""
    peak = np.array([np.abs(values).max(initial=0.0)])
    pool.maximum(peak)
    count = np.array([values.size], dtype=np.int64)
    pool.sum_ints(count)
    fixed, scale = fixed_point(values, float(peak[0]), max(int(count[0]), 1))
    total = np.array([fixed.sum()], dtype=np.int64)
    pool.sum_ints(total)
    return float(total[0]) * scale


def feature_sample(seed: int, tree: int, features: int, fraction: float) -> np.ndarray:
    """1 for the features a tree may split on: all, or round(fraction * F) (at least one) drawn from (seed, tree)."""
    allowed = np.ones(features, dtype=np.int8)
    if fraction < 1.0:
        take = max(1, int(round(fraction * features)))
        allowed[:] = 0
        allowed[stream(seed, Purpose.TREE_SAMPLING, tree).choice(features, take, replace=False)] = 1
    return allowed

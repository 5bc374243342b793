"""Random forests of histogram trees (``model.kind = "forest"``): Breiman's bagged trees on mpifl's bins and
histogram sums, so that they run distributed and federated as boosted trees do (mpifl.trees).

The keys are scikit-learn's RandomForest words: ``rounds`` is n_estimators (one member each; a member of a
K-class forest is one tree per class), ``model.max_features`` the share of features each split draws (0: the
square root of the features for a classifier, all of them for a regressor, scikit-learn's defaults),
``model.bootstrap`` the Poisson(1) row weights, ``model.max_leaf_nodes`` and ``model.min_samples_leaf`` the
trees' size.
"""

from __future__ import annotations

import functools
import math

from mpifl.constraints import Flag, Interval
from mpifl.models.base import OUTPUT, NetworkKind

UNLIMITED_LEAVES = 2**31 - 1


class Forest(NetworkKind):
    name = "forest"
    parameters = {
        "max_leaf_nodes": (0, Interval(int, 0, None)),  # a tree's most leaves, grown best first; 0: no limit
        "max_depth": (0, Interval(int, 0, None)),  # 0: no limit
        "bins": (255, Interval(int, 2, 65535)),  # value bins per feature, from the merged sketches
        "min_samples_leaf": (1, Interval(int, 1, None)),  # a leaf's least rows
        "max_features": (0.0, Interval(float, 0, 1)),  # the share of features a split draws; 0: scikit-learn's
        "bootstrap": (True, Flag()),  # Poisson(1) weights per (tree, row); false: every row once
        **OUTPUT,
    }
    one_variant = "trees time their own histogram kernels at each fit (mpifl.trees.variants)"
    stages_taken = ("sums", "secagg")  # integer sums, masked (mpifl.trees.secure); private forests are not built

    @classmethod
    def job_runner(cls):
        from mpifl.trees.job import run_tree_job

        return functools.partial(run_tree_job, method=forest_method())


def forest_method():
    from mpifl.trees.boosting import BoostParams
    from mpifl.trees.grower import TreeParams
    from mpifl.trees.job import TreeMethod
    from mpifl.trees.losses import ForestMean, ForestVote, ForestVotes

    def loss(cfg, classes):
        return {"linear": ForestMean, "logistic": ForestVote}.get(cfg.model.output, lambda: ForestVotes(classes))()

    def params(cfg, features):
        m = cfg.model
        share = m.max_features or (1.0 if m.output == "linear" else math.sqrt(features) / features)
        tree = TreeParams(max_leaves=m.max_leaf_nodes or UNLIMITED_LEAVES, max_depth=m.max_depth, l2=0.0,
                          gamma=0.0, min_child_weight=0.5, min_child_rows=m.min_samples_leaf, lr=1.0 / cfg.rounds,
                          split_features=share, seed=cfg.seed)
        return BoostParams(rounds=cfg.rounds, bins=m.bins, seed=cfg.seed, tree=tree, bootstrap=m.bootstrap)

    def recorded(cfg):
        return {"n_estimators": cfg.rounds, "seed": cfg.seed,
                **{key: getattr(cfg.model, key) for key in ("max_leaf_nodes", "max_depth", "bins",
                                                            "min_samples_leaf", "max_features", "bootstrap")}}

    return TreeMethod("forest", loss, params, recorded, scaled_by_rounds=True)

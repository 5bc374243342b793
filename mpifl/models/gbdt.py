"""Gradient-boosted histogram trees (``model.kind = "gbdt"``): not a parameter vector, so not the round loop.

The kind declares its keys, in the words LightGBM and XGBoost users know, and hands the whole job to
mpifl.trees.job (``job_runner``).  ``rounds`` is the boosting rounds (one tree per output each), ``train.lr``
the shrinkage and ``model.l2`` the leaves' L2 penalty (lambda).
"""

from __future__ import annotations

from mpifl.constraints import Interval
from mpifl.models.base import OUTPUT, NetworkKind


class Gbdt(NetworkKind):
    name = "gbdt"
    parameters = {
        "max_leaves": (31, Interval(int, 2, None)),  # leaves a tree grows to, leaf by leaf (LightGBM's num_leaves)
        "max_depth": (0, Interval(int, 0, None)),  # 0: no limit
        "bins": (255, Interval(int, 2, 65535)),  # value bins per feature, from the merged sketches
        "min_child_weight": (1e-3, Interval(float, 0, None)),  # a child's least Hessian sum
        "min_child_rows": (20, Interval(int, 1, None)),  # a child's least rows (LightGBM's min_data_in_leaf)
        "gamma": (0.0, Interval(float, 0, None)),  # the least gain a split must bring (XGBoost's gamma)
        "subsample": (1.0, Interval(float, 0, 1, "right")),  # the rows a tree sees, drawn per tree
        "colsample": (1.0, Interval(float, 0, 1, "right")),  # the features a tree may split on, drawn per tree
        # every feature's public bounds, which differentially private trees bin between (low >= high: not given)
        "feature_low": (0.0, Interval(float, None, None)),
        "feature_high": (0.0, Interval(float, None, None)),
        **OUTPUT,
    }
    one_variant = "trees time their own histogram kernels at each fit (mpifl.trees.variants)"
    stages_taken = ("sums", "secagg", "privacy")  # integer sums, masked (mpifl.trees.secure), noised (.privacy)

    @classmethod
    def job_runner(cls):
        from mpifl.trees.job import run_tree_job

        return run_tree_job


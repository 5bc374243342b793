"""Random forests (model.kind = "forest"): the bootstrap and split-feature kernels against plain Python, the
split criterion against scikit-learn's, accuracy beside scikit-learn's RandomForestClassifier, and the job."""

import json

import numpy as np
import pytest

import mpifl
from mpifl.trees import kernels as K
from mpifl.trees.boosting import BoostParams, fit
from mpifl.trees.grower import TreeParams
from mpifl.trees.losses import ForestMean, ForestVote, ForestVotes

MASK = (1 << 64) - 1


def row_hash(seed, tree, place, salt):
    z = (seed * 0x9E3779B97F4A7C15 + tree * 0xBF58476D1CE4E5B9 + place * 0x94D049BB133111EB + salt) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_poisson_weights_are_the_inverse_cdf_of_each_rows_hash():
    places = np.array([0, 1, 7, 2**32 + 5, 123456789], dtype=np.int64)
    out = np.empty(places.size, dtype=np.int64)
    K.poisson_weights(11, 4, places, out)
    for place, w in zip(places, out):
        u = (row_hash(11, 4, int(place), K.BOOTSTRAP_SALT) >> 11) / 2.0**53
        k, term, cdf = 0, np.exp(-1.0), np.exp(-1.0)
        while u >= cdf:
            k += 1
            term /= k
            cdf += term
        assert w == k
    many = np.empty(200_000, dtype=np.int64)
    K.poisson_weights(0, 0, np.arange(many.size), many)
    assert abs(many.mean() - 1.0) < 0.01 and abs(many.var() - 1.0) < 0.02 and abs((many == 0).mean() - np.exp(-1)) < 0.005


def test_a_nodes_features_are_a_partial_fisher_yates_shuffle_of_the_allowed():
    allowed = np.array([1, 0, 1, 1, 0, 1, 1, 1], dtype=np.int8)
    out, pool = np.empty_like(allowed), np.empty(8, dtype=np.int64)
    K.split_features(5, 3, 17, allowed, 3, pool, out)
    usable = [f for f in range(8) if allowed[f]]
    for j in range(3):
        pick = j + row_hash(5, 3, 17, K.SPLIT_SALT + j) % (len(usable) - j)
        usable[j], usable[pick] = usable[pick], usable[j]
    assert sorted(np.flatnonzero(out)) == sorted(usable[:3])
    K.split_features(5, 3, 17, allowed, 99, pool, out)
    assert (out == allowed).all()


def forest(rounds, **tree):
    return BoostParams(rounds=rounds, bins=255, seed=1, tree=TreeParams(
        **{"max_leaves": 2**31 - 1, "l2": 0.0, "min_child_rows": 1, "min_child_weight": 0.5, "lr": 1.0 / rounds,
           **tree}))


def test_one_unbootstrapped_tree_on_two_classes_splits_as_scikit_learns_gini_tree():
    """Weighted variance on a 0/1 label is half the Gini impurity: the same splits, and leaves of the same
    shares (on data whose values are the bins' own, so the bins lose nothing)."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(2)
    X = rng.integers(0, 12, (400, 4)).astype(float)
    y = ((X[:, 0] + X[:, 1] * (X[:, 2] > 5) + rng.normal(0, 2, 400)) > 8).astype(float)
    params = BoostParams(rounds=1, bins=32, bootstrap=False,
                         tree=TreeParams(max_leaves=8, l2=0.0, min_child_rows=1, min_child_weight=0.5, lr=1.0))
    mine = fit(X, y, ForestVote(), params)
    theirs = DecisionTreeClassifier(max_leaf_nodes=8, random_state=0).fit(X, y)
    assert np.allclose(mine.probabilities(X)[:, 1], theirs.predict_proba(X)[:, 1], atol=1e-12)


def test_one_unbootstrapped_tree_on_four_classes_splits_as_scikit_learns_gini_tree():
    """The class-count histograms and the Gini split: sklearn's tree on values that are their own bins, every
    feature at every split; the leaves hold the same class shares."""
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(4)
    X = rng.integers(0, 10, (500, 5)).astype(float)
    y = np.digitize(X[:, 0] + 0.5 * X[:, 3] * (X[:, 1] > 4) + rng.normal(0, 1.5, 500), [3, 6, 9]).astype(float)
    params = BoostParams(rounds=1, bins=32, bootstrap=False,
                         tree=TreeParams(max_leaves=12, l2=0.0, min_child_rows=1, min_child_weight=0.5, lr=1.0))
    mine = fit(X, y, ForestVotes(4), params)
    theirs = DecisionTreeClassifier(max_leaf_nodes=12, random_state=0).fit(X, y)
    assert mine.trees[0][0].leaves == theirs.get_n_leaves() == 12
    assert np.allclose(mine.probabilities(X), theirs.predict_proba(X), atol=1e-12)


def test_the_gini_split_kernel_is_the_brute_force_searchs():
    rng = np.random.default_rng(7)
    F, B, classes = 3, 6, 3
    hist = np.zeros((F, B + 1, classes + 1), dtype=np.int64)
    hist[:, :, :classes] = rng.integers(0, 5, (F, B + 1, classes))
    hist[:, :, classes] = hist[:, :, :classes].sum(axis=2)  # rows of weight one
    n_bins = np.full(F, B)
    out = np.zeros(7)
    K.best_gini_split(hist, n_bins, B, 1, 0.5, np.ones(F, dtype=np.int8), np.empty(classes), out)

    def purity(c):
        return (c ** 2).sum() / c.sum() if c.sum() else 0.0

    best = (0.0, None)
    for f in range(F):
        total = hist[f, :, :classes].sum(axis=0)
        for t in range(B - 1):
            for missing_left in (1, 0):
                left = hist[f, : t + 1, :classes].sum(axis=0) + missing_left * hist[f, B, :classes]
                if left.sum() and (total - left).sum():
                    gain = 0.5 * (purity(left) + purity(total - left) - purity(total))
                    if gain > best[0] + 1e-12:
                        best = (gain, (f, t, missing_left))
    assert out[0] == pytest.approx(best[0], rel=1e-12) and tuple(int(v) for v in out[1:4]) == best[1]


def test_varying_features_are_those_with_rows_in_two_bins():
    hist = np.zeros((3, 5, 2), dtype=np.int64)
    hist[0, 1, 1], hist[0, 3, 1] = 2, 1  # two bins
    hist[1, 2, 1] = 3  # one bin
    hist[2, 0, 1], hist[2, 4, 1] = 1, 1  # a bin and the missing bin
    out = np.empty(3, dtype=np.int8)
    K.varying_features(hist, np.full(3, 4), 4, 1, -1, np.ones(3, dtype=np.int8), out)
    assert out.tolist() == [1, 0, 1]
    K.varying_features(hist, np.full(3, 4), 4, 1, -1, np.array([0, 1, 1], dtype=np.int8), out)
    assert out.tolist() == [0, 0, 1]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_forest_classifies_as_well_as_scikit_learns(n_classes):
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(1500, 12, n_informative=6, n_classes=n_classes, random_state=n_classes)
    Xtr, Xte, ytr, yte = X[:1000], X[1000:], y[:1000], y[1000:]
    loss = ForestVote() if n_classes == 2 else ForestVotes(n_classes)
    mine = fit(Xtr, ytr.astype(float), loss, forest(60, split_features=np.sqrt(12) / 12, seed=1))
    theirs = RandomForestClassifier(60, random_state=0).fit(Xtr, ytr)
    ours, sklearns = (mine.predict(Xte) == yte).mean(), theirs.score(Xte, yte)
    assert ours >= sklearns - 0.03, (ours, sklearns)
    p = mine.probabilities(Xte)
    assert p.shape == (500, n_classes) and np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all()


def test_a_regression_forest_predicts_its_trees_mean():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 5))
    y = X[:, 0] ** 2 + X[:, 1] + 0.1 * rng.standard_normal(600)
    model = fit(X, y, ForestMean(), forest(20, min_child_rows=5))
    trees = [r[0] for r in model.trees]
    assert np.allclose(model.predict(X), np.sum([_walk_all(t, X) for t in trees], axis=0), rtol=1e-12)
    assert np.corrcoef(model.predict(X), y)[0, 1] > 0.9


def _walk_all(tree, X):
    out = np.empty(X.shape[0])
    for i, x in enumerate(X):
        node = 0
        while tree.feature[node] >= 0:
            v = x[tree.feature[node]]
            left = tree.missing_left[node] if np.isnan(v) else v <= tree.threshold[node]
            node = tree.left[node] if left else tree.right[node]
        out[i] = tree.value[node]
    return out


def test_a_forest_job_validates_on_its_fold_and_its_model_file_predicts(tmp_path):
    from mpifl.__main__ import main

    job = dict(mode="distributed", model__kind="forest", rounds=12, log_every=4, data__folds=3, data__fold=1)
    result = mpifl.run(None, out=tmp_path / "run", **job)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "forest" and summary["task"] == "forest_softmax" and summary["trees"] == 120
    assert 0.85 < summary["final_val_accuracy"] <= 1.0 and 0.85 < summary["final_accuracy"] <= 1.0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [4, 8, 12]
    document = json.loads((tmp_path / "run" / "model.json").read_text())
    assert document["loss"] == "forest_softmax" and document["params"]["n_estimators"] == 12
    rows = np.random.default_rng(0).random((5, 64)) * 16
    np.save(tmp_path / "rows.npy", rows)
    assert main(["predict", str(tmp_path / "run" / "model.json"), str(tmp_path / "rows.npy"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    table = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert (table[:, 0] == result.trees.predict(rows)).all()
    assert np.allclose(table[:, 1:], result.trees.probabilities(rows), rtol=1e-15)


def test_a_bad_forest_value_is_named():
    from mpifl.errors import ConfigError

    with pytest.raises(ConfigError, match="max_features"):
        mpifl.job(None, model__kind="forest", model__max_features=1.5)


def test_a_federated_tree_job_on_one_rank_says_it_needs_a_server_and_clients():
    from mpifl.errors import RankCountError

    with pytest.raises(RankCountError, match="at least 2 ranks"):
        mpifl.run(None, mode="federated", model__kind="forest", rounds=2)


def test_a_forest_resumes_to_the_same_bytes_and_refuses_to_resume_for_another_size(tmp_path):
    from mpifl.errors import ConfigError

    job = dict(mode="distributed", model__kind="forest", model__max_leaf_nodes=16, checkpoint__every=2)
    mpifl.run(None, out=tmp_path / "whole", rounds=6, **job)
    # a run whose last checkpoint is its fourth member's: resumed from it, it grows members 5 and 6 again
    mpifl.run(None, out=tmp_path / "broken", rounds=6, **{**job, "checkpoint__every": 4})
    checkpoint = tmp_path / "broken" / "checkpoint" / "model.json"
    document = json.loads(checkpoint.read_text())
    assert document["params"] == {"round": 4, "rounds": 6}
    resumed = mpifl.run(None, out=tmp_path / "broken", resume=True, rounds=6, **job)
    assert resumed.summary["resumed_from_round"] == 4
    assert (tmp_path / "broken" / "model.json").read_bytes() == (tmp_path / "whole" / "model.json").read_bytes()
    with pytest.raises(ConfigError, match="grown for rounds = 6; resume it with the same rounds \\(got 8\\)"):
        mpifl.run(None, out=tmp_path / "broken", resume=True, rounds=8, **job)

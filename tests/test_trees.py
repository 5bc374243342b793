"""Histogram trees (mpifl.trees): each kernel against a plain NumPy reference, a split against a brute-force
search, one tree against scikit-learn's on the same bins, boosting against scikit-learn's accuracy, and bad input."""

import numpy as np
import pytest

from mpifl.errors import ConfigError, DataError
from mpifl.trees import kernels as K
from mpifl.trees.binning import SKETCH_BUCKETS, count_buckets, edges_from_counts
from mpifl.trees import gradients as G
from mpifl.trees.boosting import BoostParams, fit, fixed_exponent, fixed_point, sketch_edges
from mpifl.trees.losses import Logistic, Softmax, SquaredError
from mpifl.trees.pools import Alone
from mpifl.trees.grower import Gradients, TreeGrower, TreeParams


def binned_problem(n=300, F=4, bins=8, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, F))
    if missing:
        X[rng.random((n, F)) < missing] = np.nan
    edges, n_edges = sketch_edges(X, bins, Alone())
    binned = np.empty((F, n), dtype=np.uint8)
    K.bin_rows(X, edges, n_edges, bins, binned)
    return X, binned, edges, n_edges


def test_binning_puts_each_value_at_or_below_its_bins_upper_edge_and_nan_in_the_missing_bin():
    X, binned, edges, n_edges = binned_problem(missing=0.1)
    for f in range(X.shape[1]):
        e = edges[f, : n_edges[f]]
        expected = np.where(np.isnan(X[:, f]), 8, np.searchsorted(e, X[:, f], side="left"))
        assert binned[f].tolist() == expected.tolist()
        assert 1 <= n_edges[f] <= 7 and np.all(np.diff(e) > 0)


def test_edges_are_near_the_quantiles_and_only_between_values():
    rng = np.random.default_rng(1)
    X = rng.exponential(size=(20_000, 1))
    edges, n_edges = sketch_edges(X, 5, Alone())
    assert n_edges[0] == 4
    assert np.allclose(edges[0, :4], np.quantile(X[:, 0], [0.2, 0.4, 0.6, 0.8]), atol=2e-3 * X.max())
    binary = np.repeat([[0.0], [1.0]], 50, axis=0)
    edges, n_edges = sketch_edges(binary, 255, Alone())
    assert n_edges[0] == 1 and 0.0 <= edges[0, 0] < 1.0


def test_the_histogram_kernel_sums_what_numpy_sums():
    X, binned, edges, n_edges = binned_problem(n=3 * K.TILE, F=6, missing=0.05)  # four features at once, then two
    rng = np.random.default_rng(2)
    gq, hq = rng.integers(-1000, 1000, X.shape[0]), rng.integers(0, 1000, X.shape[0])
    hp = np.empty_like(hq)
    G.to_fixed_packed(hq.astype(np.float64), 0, 14, hp)
    rows = rng.permutation(X.shape[0])
    hist = np.empty((X.shape[1], 9, 2), dtype=np.int64)
    K.build_histogram(binned, rows, 10, 2 * K.TILE + 5, gq, hp, np.empty((2, K.TILE), dtype=np.int64), hist)
    chosen = rows[10 : 2 * K.TILE + 5]  # over three tiles
    by_rows = np.empty_like(hist)
    K.build_histogram_by_rows(np.ascontiguousarray(binned.T), rows, 10, 2 * K.TILE + 5, gq, hp, by_rows)
    assert by_rows.tobytes() == hist.tobytes()
    plain = np.empty_like(hist)
    K.build_histogram_plain(binned, rows, 10, 2 * K.TILE + 5, gq, hp, plain)
    assert plain.tobytes() == hist.tobytes()
    for f in range(X.shape[1]):
        for b in range(9):
            at = chosen[binned[f, chosen] == b]
            assert hist[f, b].tolist() == [gq[at].sum(), (hq[at].sum() << 14) | at.size]


def brute_force(X_binned, g, h, n_bins, missing_bin, l2, gamma, min_rows):
    """Every (feature, threshold, missing side) scored from the rows themselves."""
    best = (0.0, -1, -1, 1)
    G, H = g.sum(), h.sum()
    for f in range(X_binned.shape[0]):
        for t in range(n_bins[f] - 1):
            for missing_left in (1, 0):
                b = X_binned[f]
                left = (b <= t) & (b != missing_bin) | ((b == missing_bin) & bool(missing_left))
                if left.sum() < min_rows or (~left).sum() < min_rows:
                    continue
                GL, HL = g[left].sum(), h[left].sum()
                gain = 0.5 * (GL**2 / (HL + l2) + (G - GL)**2 / (H - HL + l2) - G**2 / (H + l2)) - gamma
                if gain > best[0] + 1e-9:
                    best = (gain, f, t, missing_left)
    return best


@pytest.mark.parametrize("missing", [0.0, 0.2])
def test_the_best_split_is_the_brute_force_searchs(missing):
    X, binned, edges, n_edges = binned_problem(n=200, missing=missing, seed=3)
    rng = np.random.default_rng(4)
    g = rng.standard_normal(200) + 2 * (np.nan_to_num(X[:, 2]) > 0.3)
    h = rng.uniform(0.5, 1.0, 200)
    gq, gs = fixed_point(g, np.abs(g).max(), 200)
    hs = 2.0 ** -fixed_exponent(h.max(), 200, 62 - 8)
    hp = np.empty(200, dtype=np.int64)
    G.to_fixed_packed(h, fixed_exponent(h.max(), 200, 62 - 8), 8, hp)
    hist = np.empty((4, 9, 2), dtype=np.int64)
    K.build_histogram(binned, np.arange(200), 0, 200, gq, hp, np.empty((2, K.TILE), dtype=np.int64), hist)
    out = np.zeros(7)
    K.best_split(hist, n_edges + 1, 8, 8, gs, hs, 1.0, 0.1, 0.0, 5, np.ones(4, dtype=np.int8), out)
    gain, f, t, missing_left = brute_force(binned, gq * gs, (hp >> 8) * hs, n_edges + 1, 8, 1.0, 0.1, 5)
    assert (int(out[1]), int(out[2])) == (f, t) and out[0] == pytest.approx(gain, rel=1e-9)
    if missing:
        assert int(out[3]) == missing_left


def test_one_tree_is_scikit_learns_regression_tree_on_the_same_bins():
    from sklearn.tree import DecisionTreeRegressor

    X, binned, edges, n_edges = binned_problem(n=2000, F=5, bins=16, seed=5)
    rng = np.random.default_rng(6)
    g = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.standard_normal(2000)
    h = np.ones(2000)
    gq, gs = fixed_point(g, np.abs(g).max(), 2000)
    hs = 2.0 ** -fixed_exponent(1.0, 2000, 62 - 11)
    hp = np.empty(2000, dtype=np.int64)
    G.to_fixed_packed(h, fixed_exponent(1.0, 2000, 62 - 11), 11, hp)
    grower = TreeGrower(binned, n_edges + 1, 16, TreeParams(max_leaves=8, l2=0.0, min_child_rows=1,
                                                            min_child_weight=0.0, lr=1.0), 11)
    rows = np.arange(2000)
    (tree,), leaves = grower.grow(rows, Gradients(gq, hp, gs, hs, 11), np.ones(5, dtype=np.int8), edges)
    # with h = 1 and no l2 the gain is the squared error's decrease and a leaf's value is -mean(g)
    reference = DecisionTreeRegressor(max_leaf_nodes=8, random_state=0).fit(binned.T.astype(float), -g)
    ours = np.zeros((2000, 1))
    K.predict_binned(binned, 16, tree.feature, tree.threshold_bin, tree.missing_left, tree.left, tree.right,
                     tree.value, ours, 0)
    assert tree.leaves == reference.get_n_leaves() == 8
    assert np.allclose(ours[:, 0], reference.predict(binned.T.astype(float)), atol=1e-9)
    by_leaves = np.zeros((2000, 1))
    K.add_leaf_values(rows, leaves, tree.value, by_leaves, 0)
    assert by_leaves.tobytes() == ours.tobytes()


def test_raw_and_binned_predictions_agree():
    X, binned, edges, n_edges = binned_problem(n=500, missing=0.1, seed=7)
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) > 0).astype(float)
    booster = fit(X, y, Logistic(), BoostParams(rounds=5, bins=8, tree=TreeParams(max_leaves=6, min_child_rows=5)))
    binned_scores = np.tile(booster.base, (500, 1))
    for (t,) in booster.trees:
        K.predict_binned(binned, 8, t.feature, t.threshold_bin, t.missing_left, t.left, t.right, t.value,
                         binned_scores, 0)
    assert booster.raw_scores(X).tobytes() == binned_scores.tobytes()


def test_boosting_scores_as_scikit_learns_histogram_boosting_on_its_data_sets():
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    for loader, loss in [(load_breast_cancer, Logistic()), (load_digits, Softmax(10))]:
        X, y = loader(return_X_y=True)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        params = BoostParams(rounds=60, bins=63, tree=TreeParams(max_leaves=15, l2=0.0, min_child_rows=10, lr=0.1))
        ours = (fit(Xtr, ytr.astype(float), loss, params).predict(Xte) == yte).mean()
        theirs = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, learning_rate=0.1, max_bins=63,
                                                min_samples_leaf=10, early_stopping=False).fit(Xtr, ytr).score(Xte, yte)
        assert ours >= theirs - 0.03, (loader.__name__, ours, theirs)


def test_a_regression_booster_fits_and_a_model_file_predicts_the_same_bytes(tmp_path):
    from mpifl.trees import model_file

    rng = np.random.default_rng(8)
    X = rng.standard_normal((800, 3))
    X[rng.random((800, 3)) < 0.1] = np.nan
    y = np.sin(np.nan_to_num(X[:, 0])) + 0.1 * rng.standard_normal(800)
    booster = fit(X, y, SquaredError(), BoostParams(rounds=30, bins=32, tree=TreeParams(max_leaves=8, min_child_rows=5)))
    assert np.mean((booster.predict(X) - y) ** 2) < 0.3 * np.var(y)
    model_file.write(tmp_path / "model.json", booster, {"rounds": 30})
    again = model_file.read(tmp_path / "model.json")
    assert again.raw_scores(X).tobytes() == booster.raw_scores(X).tobytes()
    assert "NaN" not in (tmp_path / "model.json").read_text()


def walk(document, x):
    """A tree model's margins for one row, by a plain Python walk of model.json."""
    scores = list(document["base"])
    for tree in document["trees"]:
        node = 0
        while tree["feature"][node] >= 0:
            value = x[tree["feature"][node]]
            if value != value:
                node = tree["left"][node] if tree["missing_left"][node] else tree["right"][node]
            else:
                node = tree["left"][node] if value <= tree["threshold"][node] else tree["right"][node]
        scores[tree["output"]] += tree["value"][node]
    return scores


def test_mpifl_predict_writes_what_a_plain_walk_of_the_model_file_predicts(tmp_path, capsys):
    import json

    from mpifl.__main__ import main
    from mpifl.trees import model_file

    X, binned, edges, n_edges = binned_problem(n=300, F=3, missing=0.1, seed=9)
    y = np.digitize(np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 2]), [-0.5, 0.5]).astype(float)
    booster = fit(X, y, Softmax(3), BoostParams(rounds=8, bins=16, tree=TreeParams(max_leaves=6, min_child_rows=5)))
    model_file.write(tmp_path / "model.json", booster, {})
    np.save(tmp_path / "rows.npy", X[:40])
    assert main(["predict", str(tmp_path / "model.json"), str(tmp_path / "rows.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "prediction,p0,p1,p2"
    document = json.loads((tmp_path / "model.json").read_text())
    for line, x in zip(lines[1:], X[:40]):
        margins = walk(document, x)
        assert float(line.split(",")[0]) == float(np.argmax(margins))
        e = np.exp(np.array(margins) - max(margins))
        assert np.allclose([float(v) for v in line.split(",")[1:]], e / e.sum(), rtol=1e-12)


@pytest.mark.parametrize("make, message", [
    (lambda X, y: (X, np.where(np.arange(len(y)) == 7, 3.0, y)), "Label 3.0 of row 7 is not a class"),
    (lambda X, y: (np.column_stack([X, np.full(len(y), np.nan)]), y), "Feature 4 is missing"),
    (lambda X, y: (X[:10], y[:10]), "more bins than the 10 training rows"),
    (lambda X, y: (np.ones_like(X), y), "No feature takes two values"),
])
def test_bad_input_gets_a_clear_error(make, message):
    X, binned, edges, n_edges = binned_problem(n=100)
    y = (X[:, 0] > 0).astype(float)
    X, y = make(X, y)
    with pytest.raises(DataError, match=message):
        fit(X, y, Logistic(), BoostParams(rounds=2, bins=16))


def test_a_constant_feature_is_never_split_on():
    X, binned, edges, n_edges = binned_problem(n=400)
    X[:, 1] = 5.0
    booster = fit(X, (X[:, 0] + X[:, 2] > 0).astype(float), Logistic(), BoostParams(rounds=5, bins=16))
    assert booster.n_edges[1] == 0 and not any((t.feature == 1).any() for (t,) in booster.trees)


TREE_JOB = dict(mode="distributed", model__kind="gbdt", model__output="softmax", model__bins=31, model__max_leaves=7,
                model__min_child_rows=10, rounds=6, train__lr=0.2)


def test_a_gbdt_job_writes_its_model_summary_and_records_and_resumes_between_trees_to_the_same_bytes(tmp_path):
    import json

    import mpifl

    whole = mpifl.run(None, out=tmp_path / "whole", **TREE_JOB)
    assert whole.trees is not None and whole.model.size == 0
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["trees"] == 60 and summary["final_accuracy"] > 0.85 and summary["compile_seconds"] >= 0
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2, 3, 4, 5, 6] and records[-1]["accuracy"] == summary["final_accuracy"]
    # a run that stopped after its third round's checkpoint, then resumed for the rest
    mpifl.run(None, out=tmp_path / "broken", **{**TREE_JOB, "rounds": 3, "checkpoint__every": 1})
    resumed = mpifl.run(None, out=tmp_path / "broken", resume=True, **{**TREE_JOB, "checkpoint__every": 1})
    assert resumed.summary["resumed_from_round"] == 3
    assert (tmp_path / "broken" / "model.json").read_bytes() == (tmp_path / "whole" / "model.json").read_bytes()



def test_the_gradient_kernels_compute_what_numpy_computes():
    rng = np.random.default_rng(10)
    scores = rng.standard_normal((500, 4)) * 3
    y = rng.integers(0, 4, 500).astype(np.float64)
    g, h = np.empty((4, 500)), np.empty((4, 500))
    G.softmax_gradients(scores, y, g, h)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert np.allclose(g, (p - np.eye(4)[y.astype(int)]).T, atol=1e-14)
    assert np.allclose(h, np.maximum(p * (1 - p), 1e-16).T, atol=1e-14)
    G.logistic_gradients(scores[:, :1], (y > 1).astype(float), g[:1], h[:1])
    q = 1 / (1 + np.exp(-scores[:, 0]))
    assert np.allclose(g[0], q - (y > 1), atol=1e-14) and np.allclose(h[0], q * (1 - q), atol=1e-14)
    G.squared_gradients(scores[:, :1], y, g[:1], h[:1])
    assert np.array_equal(g[0], scores[:, 0] - y) and (h[0] == 1).all()
    fixed = np.empty(500, dtype=np.int64)
    G.to_fixed(g[0], 40, fixed)
    assert np.array_equal(fixed, np.rint(np.ldexp(g[0], 40)).astype(np.int64))
    packed = np.empty(500, dtype=np.int64)
    G.to_fixed_packed(h[0], 30, 10, packed)
    assert np.array_equal(packed, (np.rint(np.ldexp(h[0], 30)).astype(np.int64) << 10) | 1)
    out = np.empty(2)
    G.peaks(g[0], h[0], np.arange(0, 500, 3), False, out)
    assert out.tolist() == [np.abs(g[0][::3]).max(), h[0][::3].max()]


def test_binning_gives_the_binary_searchs_bins_at_and_around_every_edge():
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.standard_normal((5000, 3)), rng.exponential(size=(5000, 3)) ** 3], axis=1)
    edges, n_edges = sketch_edges(X, 255, Alone())
    for f in range(6):
        e = edges[f, : n_edges[f]]
        values = np.concatenate([X[:, f], e, np.nextafter(e, np.inf), np.nextafter(e, -np.inf), [np.nan]])
        column = np.full((values.size, 6), 0.0)
        column[:, f] = values
        out = np.empty((6, values.size), dtype=np.uint8)
        K.bin_rows(column, edges, n_edges, 255, out)
        expected = np.where(np.isnan(values), 255, np.searchsorted(e, values, side="left"))
        assert out[f].tolist() == expected.tolist()


def test_mpifl_predict_names_a_file_that_is_not_a_tree_model(tmp_path, capsys):
    from mpifl.__main__ import main

    (tmp_path / "model.json").write_text('{"format": "something else"}')
    np.save(tmp_path / "rows.npy", np.zeros((2, 3)))
    assert main(["predict", str(tmp_path / "model.json"), str(tmp_path / "rows.npy")]) != 0
    assert "not an mpifl tree model" in capsys.readouterr().err


def test_a_tree_job_refuses_stages_and_secagg_settings_it_cannot_honour():
    import mpifl
    from mpifl.errors import ConfigError
    from mpifl.trees.job import check_settings

    base = dict(mode="federated", model__kind="gbdt", secagg__enabled=True)
    with pytest.raises(ConfigError, match="secagg.dropout must be 0"):
        check_settings(mpifl.job(None, **base, secagg__dropout=0.1))
    with pytest.raises(ConfigError, match="secagg.bits must be 64"):
        check_settings(mpifl.job(None, **base, secagg__bits=32))
    check_settings(mpifl.job(None, **base))  # the plain protocol is taken
    with pytest.raises(ConfigError, match="turns on compress, which model.kind 'gbdt' does not apply"):
        mpifl.job(None, mode="federated", model__kind="gbdt", compress__uplink="topk")
    with pytest.raises(ConfigError, match="turns on privacy, which model.kind 'forest' does not apply"):
        mpifl.job(None, mode="federated", model__kind="forest", privacy__noise_multiplier=1.0)


def test_private_trees_refuse_what_their_guarantee_cannot_take():
    import mpifl
    from mpifl.errors import ConfigError
    from mpifl.trees.privacy import settle

    private = dict(mode="federated", privacy__noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="model.feature_low < model.feature_high"):
        settle(mpifl.job(None, model__kind="gbdt", **private), 10)
    bounded = dict(model__kind="gbdt", model__feature_low=0.0, model__feature_high=16.0, **private)
    with pytest.raises(ConfigError, match="privacy.noise = \"central\""):
        settle(mpifl.job(None, **bounded, privacy__noise="distributed", server__sampling="fixed"), 10)
    assert settle(mpifl.job(None, model__kind="gbdt", mode="federated"), 10) is None


def test_the_servers_noise_on_a_histogram_has_the_gaussian_mechanisms_scale():
    """sigma = z sqrt(3 F) in units of (C, C, 1) on each bin's gradient sum, Hessian sum and rows."""
    from mpifl.trees import kernels as K
    from mpifl.trees.privacy import TreePrivacy

    F, B, bits = 3, 40_000, 20
    g_scale, h_scale, z, clip = 2.0**-30, 2.0**-25, 1.5, 0.5
    hist = np.zeros((F, B, K.CHANNELS), dtype=np.int64)
    hist[:, :, K.PACKED] = (np.int64(10**10) << bits) | 5000  # far from the floors
    private = TreePrivacy(z, clip, 1e-5, 0.0, 1.0, 10, seed=3)
    Gradients(None, None, g_scale, h_scale, bits).add_noise(hist, private, 2, 0, 0)
    sigma = z * np.sqrt(3 * F)
    g = hist[:, :, K.GRAD] * g_scale / clip
    h = ((hist[:, :, K.PACKED] >> bits) - 10**10) * h_scale / clip
    n = (hist[:, :, K.PACKED] & ((1 << bits) - 1)) - 5000
    for noise in (g, h, n):
        assert abs(noise.std() / sigma - 1) < 0.01 and abs(noise.mean()) < 0.02 * sigma


def test_a_private_tree_jobs_epsilon_is_the_accountants_for_its_releases():
    import dp_accounting
    from dp_accounting import rdp

    from mpifl.trees.privacy import epsilon, noise_for, releases

    assert releases(20, 1, 8, 3) == 2 + 20 * 4  # the sketch, the counts, four depths a tree
    assert releases(5, 10, 15, 0) == 2 + 5 * 10 * 15  # no max_depth: a chain of max_leaves - 1 splits
    by_hand = rdp.RdpAccountant()
    for _ in range(82):
        by_hand.compose(dp_accounting.GaussianDpEvent(3.0))
    assert epsilon(3.0, 82, 1e-5) == pytest.approx(by_hand.get_epsilon(1e-5), rel=1e-9)
    z = noise_for(4.0, 82, 1e-5)
    assert epsilon(z, 82, 1e-5) <= 4.0 < epsilon(z * 0.99, 82, 1e-5)


@pytest.mark.parametrize("pin", ["plain", "tiled", "rows"])
def test_every_histogram_variant_grows_the_same_trees_and_the_chooser_times_all_three(pin, monkeypatch):
    from mpifl.trees import variants
    from mpifl.trees.model_file import to_document

    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] > 0).astype(float)
    params = BoostParams(rounds=3, bins=32, tree=TreeParams(max_leaves=8, min_child_rows=5))
    told = {}
    chosen = fit(X, y, Logistic(), params, told=told)
    assert told["histogram_kernel"] in variants.VARIANTS and set(told["histogram_seconds"]) == set(variants.VARIANTS)
    monkeypatch.setenv(variants.PIN, pin)
    pinned = {}
    assert to_document(fit(X, y, Logistic(), params, told=pinned), {}) == to_document(chosen, {})
    assert pinned["histogram_kernel"] == pin and pinned["histogram_seconds"] == {}
    monkeypatch.setenv(variants.PIN, "fastest")
    with pytest.raises(ConfigError, match="MPIFL_TREE_HISTOGRAM='fastest' is not a histogram variant"):
        fit(X, y, Logistic(), params)

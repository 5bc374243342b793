"""Model selection, serially: validation folds by hand, the federated evaluation's sums against a serial
computation, early stopping on a scripted metric, the search spaces, cv_results' ranking, and bad input refused
before anything runs.  The runs and sweeps on real ranks are in tests/test_mpi_selection.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.model_selection import KFold

import mpifl
from mpifl.data.shards import ClientData, Shard
from mpifl.data.validation import (
    check,
    client_folds,
    distributed_split,
    federated_split,
    fold_of_places,
    kfold_bounds,
)
from mpifl.errors import ConfigError, DataError
from mpifl.progress import RoundRecord
from mpifl.round_records import validation_fields
from mpifl.search import Dimension, random_points
from mpifl.selection import BestRound
from mpifl.strategies.sampling import evaluation_sample
from mpifl.sweep import Sweep, cv_results


def shard(n, d=3, start=0):
    X = np.arange(start * d, (start + n) * d, dtype=np.float64).reshape(n, d)
    return Shard(X, np.arange(start, start + n, dtype=np.float64))


def test_row_folds_are_scikit_learns_kfold_cut_by_hand():
    assert kfold_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert fold_of_places(np.arange(10), 10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    n = 569
    for f, (_, held) in enumerate(KFold(5).split(np.zeros(n))):
        assert np.array_equal(np.flatnonzero(fold_of_places(np.arange(n), n, 5) == f), held)


def test_a_workers_validation_rows_are_its_rows_in_the_held_out_fold_whatever_the_worker_count():
    n = 23
    for workers in (1, 2, 3):
        cuts = np.array_split(np.arange(n), workers)
        held = []
        for places in cuts:
            train, val = distributed_split(shard(places.size, start=int(places[0])), places, n, 0, 0.0, 4, 1)
            assert train.n + val.n == places.size
            held.extend(val.y.astype(int).tolist())
        assert held == list(range(6, 12))  # fold 1 of KFold(4) on 23 rows: places 6..11
    shares = []
    for workers in (1, 3):  # a seeded share: the same rows held out on 1 worker and on 3
        rows = []
        for places in np.array_split(np.arange(n), workers):
            _, val = distributed_split(shard(places.size, start=int(places[0])), places, n, 7, 0.25, 0, 0)
            rows.extend(val.y.astype(int).tolist())
        shares.append(sorted(rows))
    assert shares[0] == shares[1] and len(shares[0]) == round(0.25 * n)


def test_client_folds_deal_a_seeded_permutation_into_kfolds_blocks():
    folds = client_folds(5, 10, 3)
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([5, 17]))).permutation(10)
    expected = np.empty(10, dtype=int)
    expected[order] = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert folds.tolist() == expected.tolist()
    assert np.bincount(folds).tolist() == [4, 3, 3]


def test_a_clients_validation_share_depends_on_the_seed_and_the_client_not_on_who_hosts_it():
    clients = [ClientData(shard(20, start=100 * k)) for k in range(4)]
    alone = federated_split(clients, range(4), 4, 3, 0.25, 0, 0)
    hosted = federated_split(clients[2:], range(2, 4), 4, 3, 0.25, 0, 0)
    for a, b in zip(alone[2:], hosted):
        assert np.array_equal(a.validation.y, b.validation.y) and np.array_equal(a.train.y, b.train.y)
    for c in alone:
        assert c.validation.n == 5 and c.train.n == 15
        assert not set(c.validation.y) & set(c.train.y)
    given = ClientData(shard(20), validation=shard(3, start=50))  # a partition's own split is kept
    assert federated_split([given], range(1), 1, 3, 0.25, 0, 0)[0] is given
    held = federated_split(clients, range(4), 4, 3, 0.0, 2, 1)  # leave-clients-out
    mask = client_folds(3, 4, 2) == 1
    assert [c.validation is not None for c in held] == mask.tolist()
    assert all(c.validation is c.train for c, m in zip(held, mask) if m)


def test_folds_that_cannot_be_cut_are_refused_with_the_key_and_the_count():
    with pytest.raises(DataError, match="data.folds = 6 is more than the job's 5 clients"):
        check(6, 0, 0.0, 5, "clients")
    with pytest.raises(DataError, match="data.fold = 3 is not one of the 3 folds"):
        check(3, 3, 0.0, 10, "clients")
    with pytest.raises(DataError, match="K >= 2"):
        check(1, 0, 0.0, 10, "clients")
    with pytest.raises(DataError, match="needs data.folds"):
        check(0, 2, 0.0, 10, "clients")


def test_the_evaluation_sample_is_seeded_per_round_and_drawn_among_the_candidates():
    candidates = np.zeros(20, dtype=bool)
    candidates[::2] = True
    a = evaluation_sample(1, 3, candidates, 0.5)
    assert a.sum() == 5 and not (a & ~candidates).any()
    assert np.array_equal(a, evaluation_sample(1, 3, candidates, 0.5))
    assert not np.array_equal(a, evaluation_sample(1, 4, candidates, 0.5))
    assert evaluation_sample(1, 3, candidates, 1.0).tolist() == candidates.tolist()


def test_federated_evaluation_is_the_sample_weighted_sum_over_the_clients_that_evaluated():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((3, 5))
    data = [(rng.standard_normal((n, 4)), rng.integers(0, 3, n).astype(float)) for n in (7, 0, 12, 5)]
    stats = {name: np.zeros(4) for name in ("val_loss", "val_correct", "val_rows", "val_personal_correct")}
    from naive import correct, loss_and_grad_sum

    for k, (X, y) in enumerate(data):
        if y.size:
            stats["val_loss"][k] = loss_and_grad_sum("softmax", X, y, theta)[0]
            stats["val_correct"][k] = stats["val_personal_correct"][k] = correct("softmax", X, y, theta)
            stats["val_rows"][k] = y.size
    fields = validation_fields(stats)
    X = np.vstack([X for X, y in data if y.size])
    y = np.concatenate([y for _, y in data if y.size])
    assert fields["val_loss"] == pytest.approx(loss_and_grad_sum("softmax", X, y, theta)[0] / y.size, rel=1e-12)
    assert fields["val_accuracy"] == pytest.approx(correct("softmax", X, y, theta) / y.size, rel=1e-12)
    assert fields["val_clients"] == 3
    per_client = [correct("softmax", X, y, theta) / y.size for X, y in data if y.size]
    assert fields["val_spread"]["worst"] == min(per_client)
    assert fields["val_spread"]["mean"] == pytest.approx(np.mean(per_client))
    assert validation_fields({k: np.zeros(4) for k in stats}) == {}


def record(rnd, value):
    return RoundRecord(round=rnd, loss=1.0, accuracy=0.5, seconds=0.0, compute_seconds=0.0, comm_seconds=0.0,
                       val_loss=value)


def test_early_stopping_on_a_scripted_metric_keeps_the_best_round_and_its_model():
    best = BestRound("val_loss", patience=2, min_delta=0.05)
    script = [1.0, 0.8, 0.78, 0.9, None, 0.7, 0.76, 0.74, 0.73]  # 0.78: not 0.05 better; None: not evaluated
    stopped = []
    for rnd, value in enumerate(script):
        if best.judge(record(rnd, value), np.full(2, float(rnd))):
            stopped.append(rnd)
            break
    assert stopped == [3]  # 0.78 and 0.9 did not improve on 0.8 by 0.05
    assert best.round == 1 and best.value == 0.8 and best.theta.tolist() == [1.0, 1.0]
    again = BestRound("val_loss", patience=3, min_delta=0.05)
    ends = [rnd for rnd, v in enumerate(script) if again.judge(record(rnd, v), np.zeros(1))]
    assert ends == [8] and again.round == 5  # 0.76, 0.74, 0.73 are not 0.05 below 0.7
    last = BestRound("val_loss", patience=1, min_delta=0.0)
    assert not last.judge(record(0, 1.0), np.zeros(1)) and not last.judge(record(1, 2.0), np.zeros(1), can_stop=False)
    assert last.stopped_after is None
    accuracy = BestRound("val_accuracy", patience=0, min_delta=0.0)  # higher is better; patience 0 never stops
    for rnd, v in enumerate([0.5, 0.7, 0.6, 0.6]):
        r = RoundRecord(round=rnd, loss=1.0, accuracy=0.0, seconds=0, compute_seconds=0, comm_seconds=0,
                        val_accuracy=v)
        assert not accuracy.judge(r, np.zeros(1))
    assert accuracy.round == 1
    pruned = BestRound("val_loss", patience=0, min_delta=0.0, prune=lambda r: r.round == 2)
    assert [pruned.judge(record(r, 1.0 - r / 10), np.zeros(1)) for r in range(4)] == [False, False, True, False]
    assert pruned.summary([record(r, 1.0) for r in range(3)])["pruned"]


def test_a_checkpointed_best_round_resumes_with_its_model_and_patience():
    best = BestRound("val_loss", 3, 0.0)
    for rnd, v in enumerate([1.0, 0.5, 0.6]):
        best.judge(record(rnd, v), np.full(3, float(rnd)))
    resumed = BestRound("val_loss", 3, 0.0)
    resumed.load_state(best.state())
    assert (resumed.round, resumed.value, resumed.waited) == (1, 0.5, 1) and resumed.theta.tolist() == [1.0] * 3
    assert not resumed.judge(record(3, 0.7), np.zeros(3)) and resumed.judge(record(4, 0.7), np.zeros(3))


def test_selecting_on_the_test_set_is_refused_and_early_stopping_needs_validation_rows():
    with pytest.raises(ConfigError, match="'accuracy' .* is computed on the test set"):
        mpifl.job(None, stop__metric="accuracy")
    with pytest.raises(ConfigError, match="not a recorded metric"):
        mpifl.job(None, stop__metric="val_acc")
    with pytest.raises(ConfigError, match="holds no validation rows"):
        mpifl.job(None, stop__patience=3)
    with pytest.raises(ConfigError, match="both hold rows out"):
        mpifl.job(None, data__folds=3, data__validation_fraction=0.1)
    mpifl.job(None, stop__patience=3, data__validation_fraction=0.1)
    mpifl.job(None, stop__patience=3, stop__metric="loss")


def test_random_points_are_drawn_per_trial_within_their_ranges():
    space = [Dimension.read("train.lr", {"low": 1e-3, "high": 1.0, "log": True}, "s"),
             Dimension.read("train.epochs", {"low": 1, "high": 5, "int": True}, "s"),
             Dimension.read("server.strategy", {"choices": ["fedavg", "fedprox"]}, "s")]
    points = random_points(space, 40, 9)
    assert points[:5] == random_points(space, 5, 9)  # trial t does not depend on how many are drawn
    assert points != random_points(space, 40, 10)
    assert all(1e-3 <= p["train.lr"] <= 1.0 and p["train.epochs"] in range(1, 6) for p in points)
    assert {p["train.epochs"] for p in points} == {1, 2, 3, 4, 5}
    assert {p["server.strategy"] for p in points} == {"fedavg", "fedprox"}
    assert sum(p["train.lr"] < 0.0316 for p in points) > 10  # log scale: half the draws below the geometric middle


@pytest.mark.parametrize("text, message", [
    ('select = "val_accuracy"\ncv = 1\n[grid]\nseed = [1]', "cv.* is 1; K-fold cross-validation needs K >= 2"),
    ('select = "accuracy"\n[grid]\nseed = [1]', "computed on the test set"),
    ('select = "val_loss"\nsearch = "random"\ntrials = 3\n[space]\n"train.lr" = {low = 1.0, high = 0.1}',
     "has an empty range: low = 1 is not below high = 0.1"),
    ('select = "val_loss"\nsearch = "random"\ntrials = 3\n[space]\n"train.lr" = {choices = []}', "empty list"),
    ('select = "val_loss"\nsearch = "random"\ntrials = 3\n[space]\n"train.lr" = {low = 0.0, high = 1.0, log = true}',
     "log scale, so low must be > 0"),
    ('search = "random"\ntrials = 3\n[space]\n"train.lr" = {low = 0.1, high = 1.0}', "name the metric that chooses"),
    ('cv = 3\n[grid]\nseed = [1]', "name the metric that chooses"),
    ('select = "val_loss"\nprune = "median"\n[grid]\nseed = [1]', "needs search = \"optuna\""),
])
def test_sweep_files_that_cannot_select_are_refused_with_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Sweep.read(path)


def test_a_sweep_whose_cv_exceeds_the_clients_or_whose_metric_is_never_recorded_is_refused_before_any_run(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('select = "val_accuracy"\ncv = 9\nranks_per_job = 3\n[grid]\n"train.lr" = [0.1]\n'
                    '[set]\n"data.clients" = 8\n')
    with pytest.raises(ConfigError, match="data.folds = 9 is more than the job's 8 clients"):
        Sweep.read(path).check_points()
    path.write_text('select = "val_accuracy"\n[grid]\n"train.lr" = [0.1]\n')
    with pytest.raises(ConfigError, match="'val_accuracy' is never recorded: the job holds no validation rows"):
        Sweep.read(path).check_points()
    path.write_text('select = "val_accuracy"\ncv = 4\nranks_per_job = 3\n[grid]\n"train.lr" = [0.1]\n'
                    '[set]\n"data.clients" = 8\n')
    Sweep.read(path).check_points()


def test_cv_results_rank_points_by_mean_score_with_ties_to_the_earlier_and_failures_last(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('select = "val_accuracy"\ncv = 2\n[grid]\n"train.lr" = [0.1, 0.2, 0.3, 0.4]\n')
    sweep = Sweep.read(path)
    scores = {0: (0.8, 0.9), 1: (0.9, 0.8), 2: (0.95, math.nan), 3: (0.7, 0.7)}
    rows = [{"point": p, "fold": f, "train.lr": 0.1 * (p + 1), "score": s, "wall_seconds": 1.0 + f,
             "status": "failed" if math.isnan(s) else "finished"} for p, pair in scores.items()
            for f, s in enumerate(pair)]
    results = cv_results(rows, sweep)
    assert [r["rank_score"] for r in results] == [1, 2, 4, 3]
    assert results[0]["split0_score"] == 0.8 and results[0]["mean_score"] == pytest.approx(0.85)
    assert results[0]["std_score"] == pytest.approx(0.05) and results[0]["mean_fit_time"] == 1.5
    assert results[2]["state"] == "failed"

"""Histogram trees over MPI: boosting on p ranks is the serial booster on the union of their rows, byte for byte,
and bad input fails on every rank with one message."""

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl.errors import DataError
from mpifl.trees.boosting import BoostParams, fit
from mpifl.trees.grower import TreeParams
from mpifl.trees.losses import Logistic, Softmax, SquaredError
from mpifl.trees.model_file import to_document
from mpifl.trees.pools import Allreduced

COMM = MPI.COMM_WORLD


def table(n=1200, F=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, F))
    X[rng.random((n, F)) < 0.05] = np.nan
    score = np.nan_to_num(X[:, 0]) - 0.5 * np.nan_to_num(X[:, 1]) ** 2 + 0.3 * rng.standard_normal(n)
    return X, score


def my_rows(n):
    """This rank's contiguous block of the n rows, and its first global row id."""
    start = COMM.rank * n // COMM.size
    return slice(start, (COMM.rank + 1) * n // COMM.size), start


def grown(kind: str, task: str):
    """(the loss, the settings) of a booster or a forest for a task of table()'s rows."""
    from mpifl.trees.losses import ForestMean, ForestVote, ForestVotes

    if kind == "boosting":
        loss = {"logistic": Logistic(), "softmax": Softmax(4), "linear": SquaredError()}[task]
        return loss, BoostParams(rounds=6, bins=32, subsample=0.8, colsample=0.7, seed=3, tree=TreeParams(
            max_leaves=7, max_depth=4, min_child_rows=10, l2=1.0, gamma=0.01))
    loss = {"logistic": ForestVote(), "softmax": ForestVotes(4), "linear": ForestMean()}[task]
    return loss, BoostParams(rounds=5, bins=32, seed=3, tree=TreeParams(
        max_leaves=2**31 - 1, l2=0.0, min_child_rows=2, min_child_weight=0.5, lr=0.2, split_features=0.5, seed=3))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("kind", ["boosting", "forest"])
@pytest.mark.parametrize("task", ["logistic", "softmax", "linear"])
def test_trees_on_the_ranks_are_the_serial_trees_on_their_union_byte_for_byte(kind, task):
    X, score = table()
    y = {"logistic": (score > 0).astype(float), "softmax": np.digitize(score, [-1.0, 0.0, 1.0]).astype(float),
         "linear": score}[task]
    loss, params = grown(kind, task)
    mine, first = my_rows(X.shape[0])
    together = fit(X[mine], y[mine], loss, params, Allreduced(COMM), first_row=first)
    alone = fit(X, y, loss, params)
    assert to_document(together, {}) == to_document(alone, {})
    assert together.raw_scores(X).tobytes() == alone.raw_scores(X).tobytes()


@pytest.mark.mpi(min_size=2)
def test_a_label_outside_the_task_on_one_rank_fails_on_every_rank_naming_it():
    X, score = table(400)
    y = (score > 0).astype(float)
    mine, first = my_rows(400)
    y_mine = y[mine].copy()
    if COMM.rank == COMM.size - 1:
        y_mine[3] = 2.0
    with pytest.raises(DataError, match=r"Label 2\.0 of row 3 is not a class of this logistic task"):
        fit(X[mine], y_mine, Logistic(), BoostParams(rounds=2, bins=16), Allreduced(COMM), first_row=first)


@pytest.mark.mpi(min_size=2)
def test_a_feature_missing_on_every_rows_fails_on_every_rank():
    X, score = table(400)
    X[:, 4] = np.nan
    mine, first = my_rows(400)
    with pytest.raises(DataError, match="Feature 4 is missing"):
        fit(X[mine], (score[mine] > 0).astype(float), Logistic(), BoostParams(rounds=2, bins=16), Allreduced(COMM),
            first_row=first)


@pytest.mark.mpi(min_size=2)
def test_a_gbdt_job_grows_the_same_trees_on_every_rank_count():
    import mpifl
    from mpifl.trees.model_file import to_document

    job = dict(mode="distributed", model__kind="gbdt", model__output="softmax", model__bins=31, model__max_leaves=7,
               model__min_child_rows=10, model__subsample=0.7, rounds=4)
    together = mpifl.run(None, COMM, **job)
    alone = mpifl.run(None, COMM.Split(COMM.rank, 0), **job)  # each rank alone, on every row
    assert to_document(together.trees, {}) == to_document(alone.trees, {})
    assert together.summary["final_accuracy"] == alone.summary["final_accuracy"]


def same_on_two_ranks(job: dict):
    """The job on every rank, and on ranks 0 and 1 alone (a server and one client rank): the same trees, byte for
    byte.  Returns the run on every rank."""
    together = mpifl.run(None, COMM, **job)
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, **job)
        pair.Free()
        assert to_document(fewer.trees, {}) == to_document(together.trees, {})
    return together


FEDERATED = dict(mode="federated", model__kind="gbdt", model__output="softmax", model__bins=31, model__max_leaves=7,
                 rounds=4, data__clients=12)


@pytest.mark.mpi(min_size=3)
def test_federated_trees_are_the_same_bytes_on_any_rank_count_and_with_every_client_the_central_trees():
    from mpifl import config
    from mpifl.data.catalog import resolve

    sampled = {**FEDERATED, "server__fraction": 0.5}
    same_on_two_ranks(sampled)
    everyone = mpifl.run(None, COMM, **FEDERATED)
    # the same trees grown on one process from every client's rows, in client order
    from mpifl.trees.job import boosting_params

    cfg = config.build(None, "<test>", settings={k.replace("__", "."): v for k, v in FEDERATED.items()})
    rows = [c.train for c in resolve(cfg).clients(range(12), 12)]
    X, y = np.concatenate([r.X for r in rows]), np.concatenate([r.y for r in rows])
    central = fit(X, y, Softmax(10), boosting_params(cfg))
    assert to_document(everyone.trees, {})["trees"] == to_document(central, {})["trees"]


@pytest.mark.mpi(min_size=2)
def test_the_server_of_a_federated_tree_job_builds_no_clients_rows(built_clients):
    built = built_clients
    job = dict(FEDERATED, data__name="synthetic", data__rows_per_rank=50, data__n_classes=3, model__output="softmax",
               data__clients=6, model__bins=15, model__min_child_rows=5)
    result = mpifl.run(None, COMM, **job)
    everyone = COMM.allgather(sorted(built))
    assert everyone[0] == []  # the server read its test rows only
    assert sorted(sum(everyone[1:], [])) == list(range(6))  # each client's rows on its own rank, once
    assert result.summary["trees"] == 12 and result.summary["mean_leaves"] > 1


@pytest.mark.mpi(min_size=3)
def test_a_federated_forest_is_the_same_bytes_on_any_rank_count():
    job = dict(mode="federated", model__kind="forest", model__max_leaf_nodes=64, rounds=5, data__clients=9,
               server__fraction=0.5)
    together = same_on_two_ranks(job)
    assert together.summary["final_accuracy"] > 0.8


@pytest.mark.mpi(min_size=3)
@pytest.mark.parametrize("plus", [False, True])
def test_federated_trees_with_masked_histograms_are_the_trees_without(plus):
    """SecAgg's pads cancel in the server's Reduce: the same integers, so the same trees, byte for byte."""
    job = {**FEDERATED, "server__fraction": 0.75, "rounds": 3}
    plain = mpifl.run(None, COMM, **job)
    masked = mpifl.run(None, COMM, **job, secagg__enabled=True, secagg__plus=plus)
    assert to_document(masked.trees, {}) == to_document(plain.trees, {})
    assert masked.summary["histogram_bytes_per_tree"] == plain.summary["histogram_bytes_per_tree"]


@pytest.mark.mpi(min_size=3)
def test_what_a_client_rank_sends_the_server_is_never_its_own_histogram(monkeypatch):
    """Every histogram a client rank sends goes through its round's pads, and what leaves differs from it."""
    from mpifl.trees import pools, secure

    sums, masked = [], []
    real_sum, real_mask = pools.AtServer.sum_histogram, secure.RoundMasks.mask

    def sum_histogram(self, hist, criterion=None):
        sums.append(hist.size)
        real_sum(self, hist, criterion)

    def mask(self, values):
        out = real_mask(self, values)
        masked.append((values.reshape(-1).view(np.uint64).copy(), out))
        return out

    monkeypatch.setattr(pools.AtServer, "sum_histogram", sum_histogram)
    monkeypatch.setattr(secure.RoundMasks, "mask", mask)
    mpifl.run(None, COMM, **{**FEDERATED, "rounds": 2}, secagg__enabled=True)
    if COMM.rank:
        assert len(masked) == len(sums) > 0
        assert all(not np.array_equal(own, out) for own, out in masked)


@pytest.mark.mpi(min_size=3)
def test_private_federated_trees_are_the_same_bytes_on_any_rank_count_and_report_their_epsilon():
    """The server draws every release's noise from (seed, release): the rank count changes nothing."""
    from mpifl.trees.privacy import epsilon

    job = {**FEDERATED, "rounds": 3, "model__max_depth": 3, "privacy__noise_multiplier": 2.0,
           "model__feature_low": 0.0, "model__feature_high": 16.0}
    together = same_on_two_ranks(job)
    plain = mpifl.run(None, COMM, **{k: v for k, v in job.items() if not k.startswith("privacy")})
    assert to_document(plain.trees, {})["trees"] != to_document(together.trees, {})["trees"]
    said = together.summary["privacy"]
    assert said["releases"] == 2 + 3 * 10 * 4
    assert said["epsilon"] == pytest.approx(epsilon(2.0, said["releases"], 1e-5), rel=1e-12)

"""Histogram trees over MPI: boosting on p ranks is the serial booster on the union of their rows, byte for byte,
and bad input fails on every rank with one message."""

import numpy as np
import pytest
from mpi4py import MPI

from mpifl.errors import DataError
from mpifl.trees.boosting import BoostParams, fit
from mpifl.trees.losses import Logistic, Softmax, SquaredError
from mpifl.trees.pools import Allreduced
from mpifl.trees.grower import TreeParams
from mpifl.trees.model_file import to_document

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


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("task", ["logistic", "softmax", "linear"])
def test_boosting_on_the_ranks_is_serial_boosting_on_their_union_byte_for_byte(task):
    X, score = table()
    y = {"logistic": (score > 0).astype(float), "softmax": np.digitize(score, [-1.0, 0.0, 1.0]).astype(float),
         "linear": score}[task]
    loss = {"logistic": Logistic(), "softmax": Softmax(4), "linear": SquaredError()}[task]
    params = BoostParams(rounds=6, bins=32, subsample=0.8, colsample=0.7, seed=3,
                         tree=TreeParams(max_leaves=7, max_depth=4, min_child_rows=10, l2=1.0, gamma=0.01))
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

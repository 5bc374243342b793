"""L-BFGS: the optimizer alone, and distributed L-BFGS against scikit-learn's optimum."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from mpifl import config
from mpifl.errors import ConfigError
from mpifl.lbfgs import Lbfgs
from mpifl.runner import run_job


def quadratic(A, b):
    def objective(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b
    return objective


def test_lbfgs_solves_a_quadratic():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    A = Q @ np.diag(np.logspace(0, 2, 30)) @ Q.T  # condition number 100
    b = rng.standard_normal(30)
    opt, x = Lbfgs(30, history=10, tol=1e-10), np.zeros(30)
    for _ in range(500):
        opt.step(x, quadratic(A, b))
        if opt.converged:
            break
    assert opt.converged
    exact = np.linalg.solve(A, b)
    assert np.max(np.abs(x - exact)) / np.max(np.abs(exact)) < 1e-8


def test_a_restored_state_continues_bitwise_identically():
    rng = np.random.default_rng(1)
    A = np.diag(np.linspace(1, 50, 12))
    b = rng.standard_normal(12)
    straight, x = Lbfgs(12, history=4, tol=0.0), np.zeros(12)
    for _ in range(8):
        straight.step(x, quadratic(A, b))
    first, y = Lbfgs(12, history=4, tol=0.0), np.zeros(12)
    for _ in range(5):
        first.step(y, quadratic(A, b))
    second = Lbfgs(12, history=4, tol=0.0)
    second.load_state({k: v.copy() for k, v in first.state().items()})
    for _ in range(3):
        second.step(y, quadratic(A, b))
    assert np.array_equal(x, y)


@pytest.mark.parametrize("classes, kind", [(2, "logistic"), (3, "softmax")])
def test_distributed_lbfgs_reaches_scikit_learns_optimum(classes, kind, tmp_path):
    X, y = make_classification(n_samples=1500, n_features=8, n_informative=5, n_classes=classes, random_state=0)
    np.save(tmp_path / "table.npy", np.column_stack([X, y]))
    C = 0.5
    reference = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
    expected = np.hstack([reference.coef_, reference.intercept_[:, None]])
    cfg = config.load(overrides=[
        "mode=distributed", f"data.path={tmp_path / 'table.npy'}", "data.test_fraction=0", f"model.kind={kind}",
        f"data.n_classes={classes}", "train.optimizer=lbfgs", "train.tol=1e-10", "rounds=500",
        f"model.l2={1 / (C * len(y))}",  # sklearn: C * sum(loss) + ||w||^2 / 2; mpifl: mean(loss) + l2 ||w||^2 / 2
    ])
    theta = run_job(MPI.COMM_SELF, cfg, tmp_path / "run", verbose=False).theta
    if kind == "softmax":  # sklearn's multinomial model, like mpifl's, has one row per class
        assert theta.shape == expected.shape
    else:
        assert theta.shape == (1, 9)
    assert np.max(np.abs(theta - expected)) / np.max(np.abs(expected)) < 1e-6


def test_lbfgs_in_federated_mode_is_refused():
    with pytest.raises(ConfigError, match="runs in distributed mode"):
        config.load(overrides=["train.optimizer=lbfgs"])

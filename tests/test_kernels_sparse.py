"""The CSR kernels against the NumPy reference on the same rows made dense, for every kind and dtype."""

from __future__ import annotations

import naive
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import kernels_for

from mpifl.data.sparse import CSR
from mpifl.model import ModelSpec
from mpifl.models import MODELS

TOL = {"float64": 1e-12, "float32": 2e-5}
OUTPUTS = {"linear": 1, "logistic": 2, "softmax": 5}


def sparse_problem(kind, n, d, dtype, density=0.1, seed=0):
    """Random CSR rows, a few of them empty, with labels and parameters."""
    rng = np.random.default_rng(seed)
    dense = sp.random(n, d, density=density, random_state=seed, format="csr", dtype=np.float64).toarray()
    dense[:: max(n // 5, 1)] = 0.0  # rows with no nonzeros at all
    X = CSR.from_dense(dense.astype(dtype))
    spec = ModelSpec(MODELS[kind], d, OUTPUTS[kind], np.dtype(dtype), sparse=True)
    y = rng.standard_normal(n) if kind == "linear" else rng.integers(0, OUTPUTS[kind], n).astype(np.float64)
    theta = (0.3 * rng.standard_normal(spec.shape)).astype(dtype)
    return spec, X, dense.astype(dtype), y.astype(dtype), theta


def rel(a, b):
    return np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.whole_range
@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 32, 33, 64, 65, 300])
def test_csr_full_gradient_and_loss_match_numpy(kind, dtype, n, variant):
    spec, X, dense, y, theta = sparse_problem(kind, n, 40, dtype)
    grad = spec.zeros()
    loss = kernels_for(spec, variant).full_gradient_sum(X, y, theta, grad, want_loss=True)
    ref_loss, ref_grad = naive.loss_and_grad_sum(kind, dense, y, theta)
    assert rel(grad, ref_grad) < TOL[dtype]
    assert abs(loss - ref_loss) / abs(ref_loss) < TOL[dtype]


def test_csr_batch_gradient_uses_only_the_given_rows(kind, dtype, variant):
    spec, X, dense, y, theta = sparse_problem(kind, 200, 30, dtype, seed=1)
    order = np.random.default_rng(2).permutation(200)
    grad = spec.zeros()
    kernels_for(spec, variant).batch_gradient_sum(X, y, theta, order, 13, 150, grad)
    rows = order[13:150]
    assert rel(grad, naive.loss_and_grad_sum(kind, dense[rows], y[rows], theta)[1]) < TOL[dtype]


def test_csr_sgd_epoch_matches_numpy(kind, variant):
    spec, X, dense, y, theta = sparse_problem(kind, 150, 20, "float64", seed=3)
    velocity = (0.1 * np.random.default_rng(4).standard_normal(spec.shape))
    order = np.random.default_rng(5).permutation(150)
    ref_theta, ref_velocity = naive.sgd_epoch(kind, dense, y, theta, velocity, order, 16, 0.1, 0.9, 0.01)
    kernels_for(spec, variant).sgd_epoch(X, y, theta, velocity, spec.zeros(), order, 16, 0.1, 0.9, 0.01)
    assert rel(theta, ref_theta) < 1e-12 and rel(velocity, ref_velocity) < 1e-12


def test_csr_sgd_epoch_objective_hook_matches_numpy(kind, variant):
    spec, X, dense, y, theta = sparse_problem(kind, 120, 20, "float64", seed=7)
    rng = np.random.default_rng(8)
    anchor, correction = rng.standard_normal(spec.shape), 0.1 * rng.standard_normal(spec.shape)
    order = rng.permutation(120)
    velocity = spec.zeros()
    ref_theta, _ = naive.sgd_epoch(kind, dense, y, theta, velocity, order, 16, 0.1, 0.9, 0.01, anchor, 0.4, correction)
    kernels_for(spec, variant).sgd_epoch(X, y, theta, velocity, spec.zeros(), order, 16, 0.1, 0.9, 0.01,
                                         (anchor, 0.4, correction))
    assert rel(theta, ref_theta) < 1e-12


def test_csr_evaluation_matches_numpy(kind, dtype, variant):
    spec, X, dense, y, theta = sparse_problem(kind, 129, 25, dtype, seed=6)
    loss, correct = kernels_for(spec, variant).evaluate_sums(X, y, theta)
    ref_loss, _ = naive.loss_and_grad_sum(kind, dense, y, theta)
    assert abs(loss - ref_loss) / abs(ref_loss) < TOL[dtype]
    if kind != "linear":
        assert correct == naive.correct(kind, dense, y, theta)


@pytest.mark.whole_range
def test_threaded_csr_gradient_equals_the_serial_one(kind, variant):
    spec, X, _, y, theta = sparse_problem(kind, 1000, 50, "float64", seed=7)
    serial, threaded = spec.zeros(), spec.zeros()
    kernels_for(spec, variant).full_gradient_sum(X, y, theta, serial)
    kernels_for(spec, variant, threads=3).full_gradient_sum(X, y, theta, threaded)
    assert rel(threaded, serial) < 1e-13


def test_csr_take_and_from_scipy_keep_the_rows():
    m = sp.random(50, 9, density=0.3, random_state=0, format="csr")
    X = CSR.from_scipy(m)
    rows = np.array([7, 0, 49, 7])
    np.testing.assert_array_equal(X.take(rows).toarray(), m.toarray()[rows])
    assert X.nnz == m.nnz and X.shape == (50, 9)


@pytest.mark.whole_range
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_csr_nan_and_inf_reach_the_loss_and_the_gradient(kind, variant, bad):
    spec, X, _, y, theta = sparse_problem(kind, 100, 10, "float64", density=0.5)
    X.data[3] = bad
    grad = spec.zeros()
    loss = kernels_for(spec, variant).full_gradient_sum(X, y, theta, grad, want_loss=True)
    assert not np.isfinite(loss)
    assert not np.all(np.isfinite(grad))


@pytest.mark.parametrize("kind, dtype", [("logistic", "float64"), ("logistic", "float32"), ("softmax", "float64")])
def test_the_csr_single_pass_repeats_bitwise_and_keeps_nothing_between_calls(kind, dtype):
    """Its working array holds theta and the gradient side by side; a second call, or a call with other
    weights in between, must start from theta alone."""
    spec, X, _, y, theta = sparse_problem(kind, 3000, 700, dtype, density=0.05, seed=11)
    kernels = kernels_for(spec, "fused")
    first, again, other = spec.zeros(), spec.zeros(), spec.zeros()
    kernels.full_gradient_sum(X, y, theta, first)
    kernels.full_gradient_sum(X, y, (theta * 2).astype(dtype), other)
    kernels.full_gradient_sum(X, y, theta, again)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    threaded = spec.zeros()
    kernels_for(spec, "fused", threads=3).full_gradient_sum(X, y, theta, threaded)
    assert rel(threaded, first) < TOL[dtype]

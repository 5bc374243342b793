"""Every Numba kernel against the NumPy reference, and by finite differences."""

from __future__ import annotations

import platform

import naive
import numpy as np
import pytest
from conftest import kernels_for, make_problem

from mpifl.kernels import LinearKernels, ModelKernels
from mpifl.kernels.expo import exp_block, sigmoid_residuals
from mpifl.kernels.prefetch import evict

TOL = {"float64": 1e-12, "float32": 2e-5}


def rel(a, b):
    return np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 7, 8, 9, 63, 64, 65, 129, 1000])
def test_full_gradient_matches_numpy(kind, dtype, n, variant):
    spec, X, y, theta = make_problem(kind, n, 7, dtype)
    grad = spec.zeros()
    loss = kernels_for(spec, variant).full_gradient_sum(X, y, theta, grad, want_loss=True)
    ref_loss, ref_grad = naive.loss_and_grad_sum(kind, X, y, theta)
    assert rel(grad, ref_grad) < TOL[dtype]
    assert abs(loss - ref_loss) / abs(ref_loss) < TOL[dtype]


def test_loss_is_zero_when_not_asked(kind, variant):
    spec, X, y, theta = make_problem(kind, 50, 4, "float64")
    assert kernels_for(spec, variant).full_gradient_sum(X, y, theta, spec.zeros(), want_loss=False) == 0.0


def test_batch_gradient_uses_only_the_given_rows(kind, dtype, variant):
    spec, X, y, theta = make_problem(kind, 200, 6, dtype)
    order = np.random.default_rng(1).permutation(200)
    grad = spec.zeros()
    kernels_for(spec, variant).batch_gradient_sum(X, y, theta, order, 17, 99, grad)
    rows = order[17:99]
    _, ref = naive.loss_and_grad_sum(kind, X[rows], y[rows], theta)
    assert rel(grad, ref) < TOL[dtype]


def test_gradient_matches_finite_differences(kind):
    spec, X, y, theta = make_problem(kind, 40, 5, "float64", seed=3)
    l2 = 0.1
    kernels = ModelKernels(spec)
    grad = spec.zeros()
    kernels.full_gradient_sum(X, y, theta, grad)
    kernels.finish_gradient(grad, theta, X.shape[0], l2)

    def objective(t):
        g = spec.zeros()
        return kernels.full_gradient_sum(X, y, t, g, want_loss=True) / X.shape[0] + kernels.penalty(t, l2)

    h = 1e-6
    numeric = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        up, down = theta.copy(), theta.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (objective(up) - objective(down)) / (2 * h)
    assert rel(grad, numeric) < 1e-6


def test_finish_gradient_adds_l2_to_weights_only():
    spec, X, y, theta = make_problem("softmax", 30, 4, "float64")
    grad = spec.zeros()
    ModelKernels(spec).full_gradient_sum(X, y, theta, grad)
    LinearKernels.finish_gradient(grad, theta, X.shape[0], 0.25)
    assert rel(grad, naive.mean_grad("softmax", X, y, theta, 0.25)) < 1e-12


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_epoch_matches_numpy(kind, dtype, momentum, variant):
    spec, X, y, theta = make_problem(kind, 123, 5, dtype)
    order = np.random.default_rng(2).permutation(123)
    velocity = spec.zeros()
    ref_theta, ref_velocity = naive.sgd_epoch(kind, X, y, theta, velocity, order, 16, 0.05, momentum, 0.01)
    kernels_for(spec, variant).sgd_epoch(X, y, theta, velocity, spec.zeros(), order, 16, 0.05, momentum, 0.01)
    assert rel(theta, ref_theta) < 50 * TOL[dtype]
    if momentum:
        assert rel(velocity, ref_velocity) < 50 * TOL[dtype]
    else:
        assert not velocity.any()  # plain SGD keeps no velocity


@pytest.mark.parametrize("mu, with_correction", [(0.7, False), (0.0, True), (0.3, True)])
def test_sgd_epoch_objective_hook_matches_numpy(kind, dtype, mu, with_correction, variant):
    """FedProx's proximal term and SCAFFOLD's drift correction inside the compiled step."""
    spec, X, y, theta = make_problem(kind, 97, 5, dtype)
    rng = np.random.default_rng(3)
    anchor = (0.5 * rng.standard_normal(spec.shape)).astype(dtype)
    correction = (0.2 * rng.standard_normal(spec.shape)).astype(dtype) if with_correction else None
    order = rng.permutation(97)
    velocity = spec.zeros()
    ref_theta, _ = naive.sgd_epoch(kind, X, y, theta, velocity, order, 16, 0.05, 0.5, 0.01, anchor, mu, correction)
    kernels_for(spec, variant).sgd_epoch(X, y, theta, velocity, spec.zeros(), order, 16, 0.05, 0.5, 0.01,
                                         (anchor, mu, correction))
    assert rel(theta, ref_theta) < 50 * TOL[dtype]


def test_an_idle_hook_changes_nothing_bit_for_bit():
    spec, X, y, theta = make_problem("softmax", 80, 4, "float64")
    order = np.arange(80)
    plain, hooked = theta.copy(), theta.copy()
    kernels = ModelKernels(spec)
    kernels.sgd_epoch(X, y, plain, spec.zeros(), spec.zeros(), order, 8, 0.1, 0.9, 0.0)
    kernels.sgd_epoch(X, y, hooked, spec.zeros(), spec.zeros(), order, 8, 0.1, 0.9, 0.0, (theta * 2, 0.0, None))
    assert np.array_equal(plain, hooked)


def test_evaluate_matches_numpy(kind, dtype, variant):
    spec, X, y, theta = make_problem(kind, 301, 6, dtype)
    loss, correct = kernels_for(spec, variant).evaluate_sums(X, y, theta)
    ref_loss, _ = naive.loss_and_grad_sum(kind, X, y, theta)
    assert abs(loss - ref_loss) / ref_loss < TOL[dtype]
    if kind != "linear":
        assert correct == naive.correct(kind, X, y, theta)


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_gradient_matches_serial(kind, threads, variant):
    spec, X, y, theta = make_problem(kind, 1001, 9, "float64")
    serial, threaded = spec.zeros(), spec.zeros()
    loss1 = kernels_for(spec, variant, 1).full_gradient_sum(X, y, theta, serial, want_loss=True)
    loss2 = kernels_for(spec, variant, threads).full_gradient_sum(X, y, theta, threaded, want_loss=True)
    assert rel(threaded, serial) < 1e-12
    assert abs(loss1 - loss2) / loss1 < 1e-12


def test_nan_in_data_reaches_the_loss(kind, variant):
    spec, X, y, theta = make_problem(kind, 20, 3, "float64")
    X[7, 1] = np.nan
    loss = kernels_for(spec, variant).full_gradient_sum(X, y, theta, spec.zeros(), want_loss=True)
    assert np.isnan(loss)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_reach_the_loss_and_the_gradient_under_the_fast_math_flags(kind, dtype, variant, bad):
    """The kernels reassociate and contract but never assume no-NaN or no-Inf (mpifl.jit): a bad value in the
    data or in diverged weights must still show, in both dtypes and at a block boundary (rows 9 and 12 of 13)."""
    spec, X, y, theta = make_problem(kind, 13, 3, dtype)
    kernels = kernels_for(spec, variant)
    X[12, 1] = bad
    grad = spec.zeros()
    loss = kernels.full_gradient_sum(X, y, theta, grad, want_loss=True)
    assert not np.isfinite(loss) and not np.isfinite(grad).all()
    assert not np.isfinite(kernels.evaluate_sums(X, y, theta)[0])
    spec, X, y, theta = make_problem(kind, 13, 3, dtype)
    theta.reshape(-1)[1] = bad  # a diverged weight
    grad = spec.zeros()
    loss = kernels.full_gradient_sum(X, y, theta, grad, want_loss=True)
    assert not np.isfinite(loss)  # (the logistic link's gradient saturates, finitely: only the loss must show it)


def test_exp_block_is_accurate_over_the_float64_range():
    x = np.concatenate([np.linspace(-700, 700, 20001), [-1e-9, 0.0, 1e-9]])
    out = np.empty_like(x)
    exp_block(x, out, x.size)
    assert np.max(np.abs(out / np.exp(x) - 1.0)) < 1e-13


def test_float32_exp_block_is_accurate_over_the_float32_range():
    x = np.concatenate([np.linspace(-87, 88, 20001), [-1e-6, 0.0, 1e-6]]).astype(np.float32)
    out = np.empty_like(x)
    exp_block(x, out, x.size)
    assert out.dtype == np.float32
    assert np.max(np.abs(out / np.exp(x.astype(np.float64)) - 1.0)) < 4e-7


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_residuals_match_numpy(dtype):
    z = np.linspace(-40, 40, 301).astype(dtype)
    y = (np.arange(301) % 2).astype(dtype)
    rows = np.random.default_rng(0).permutation(301)
    expected = 1.0 / (1.0 + np.exp(-z[:100].astype(np.float64))) - y[rows[5:105]]
    Z = z.copy()
    sigmoid_residuals(Z, y, rows, True, 5, 100)
    assert np.max(np.abs(Z[:100] - expected)) < (4e-7 if dtype == "float32" else 1e-15)
    assert np.array_equal(Z[100:], z[100:])


def test_exp_block_saturates_instead_of_overflowing():
    x = np.array([-1e6, 1e6])
    out = np.empty_like(x)
    exp_block(x, out, 2)
    assert out[0] < 1e-300 and np.isfinite(out[1]) and out[1] > 1e307


def test_evicting_an_array_from_the_caches_keeps_its_values():
    X = np.random.default_rng(0).standard_normal((300, 7))
    before = X.copy()
    assert evict(X) is (platform.machine().lower() in ("x86_64", "amd64", "x86", "i686"))
    assert np.array_equal(X, before)


def test_every_variant_repeats_bitwise(kind, dtype, variant):
    """Reassociation is fixed at compile time: the same machine and variant give the same bytes."""
    spec, X, y, theta = make_problem(kind, 203, 9, dtype)
    kernels = kernels_for(spec, variant)
    first, again = spec.zeros(), spec.zeros()
    loss1 = kernels.full_gradient_sum(X, y, theta, first, want_loss=True)
    loss2 = kernels.full_gradient_sum(X, y, theta, again, want_loss=True)
    assert first.tobytes() == again.tobytes() and loss1 == loss2
    order = np.random.default_rng(1).permutation(203).astype(np.int64)
    runs = []
    for _ in range(2):
        work = theta.copy()
        kernels.sgd_epoch(X, y, work, spec.zeros(), spec.zeros(), order, 16, 0.05, 0.9, 0.01)
        runs.append(work.tobytes())
    assert runs[0] == runs[1]

"""The MLP kernels against a NumPy forward/backward and against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from mpifl.kernels.flags import KIND_CODES
from mpifl.kernels.mlp import ACTIVATIONS, MlpBuffers, MlpLayout, mlp_entries, weight_penalty
from mpifl.kernels.variants import DEFAULT
from mpifl.models import MODELS

OUTPUTS = {"softmax": 3, "logistic": 1, "linear": 1}


def problem(kind, dtype, rows=37, widths=(5, 7, 6), seed=0):
    rng = np.random.default_rng(seed)
    layout = MlpLayout((*widths, OUTPUTS[kind]))
    X = rng.standard_normal((rows, widths[0])).astype(dtype)
    if kind == "softmax":
        y = rng.integers(0, 3, rows).astype(dtype)
    elif kind == "logistic":
        y = rng.integers(0, 2, rows).astype(dtype)
    else:
        y = rng.standard_normal(rows).astype(dtype)
    theta = layout.initial(rng, "relu", dtype) + (0.05 * rng.standard_normal(layout.size)).astype(dtype)
    return layout, X, y, theta


def calls(kind, activation):
    return mlp_entries(KIND_CODES[kind], ACTIVATIONS[activation], DEFAULT.code)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("kind", ["softmax", "logistic", "linear"])
@pytest.mark.parametrize("rows", [1, 255, 256, 257, 600])  # around the 256-row chunk
def test_full_gradient_matches_numpy(kind, activation, dtype, rtol, rows):
    layout, X, y, theta = problem(kind, dtype, rows)
    _, full_gradient, _, _, evaluate, _ = calls(kind, activation)
    buffers = MlpBuffers.allocate(layout, 256, dtype)
    grad = np.zeros(layout.size, dtype=dtype)
    loss = full_gradient(theta, layout.offsets, np.array(layout.widths), X, y, grad, buffers.A, buffers.D, buffers.G,
                         buffers.E, True)
    want_loss, want_grad = naive.mlp_loss_and_grad_sum(layout, activation, kind, X, y, theta)
    assert loss == pytest.approx(want_loss, rel=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol * 10, atol=rtol * np.abs(want_grad).max())
    eval_loss, _ = evaluate(theta, layout.offsets, np.array(layout.widths), X, y, buffers.A, buffers.D, buffers.E)
    assert eval_loss == pytest.approx(want_loss, rel=rtol)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("kind", ["softmax", "logistic", "linear"])
def test_gradient_matches_finite_differences(kind, activation):
    layout, X, y, theta = problem(kind, np.float64, rows=9)
    _, full_gradient, _, _, _, _ = calls(kind, activation)
    buffers = MlpBuffers.allocate(layout, 256, np.float64)
    widths = np.array(layout.widths)
    grad = np.zeros(layout.size)
    full_gradient(theta, layout.offsets, widths, X, y, grad, buffers.A, buffers.D, buffers.G, buffers.E, False)

    def loss_at(point):
        scratch = np.zeros(layout.size)
        return full_gradient(point, layout.offsets, widths, X, y, scratch, buffers.A, buffers.D, buffers.G,
                             buffers.E, True)

    step = 1e-6
    for i in np.random.default_rng(1).choice(layout.size, 25, replace=False):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        assert grad[i] == pytest.approx((loss_at(up) - loss_at(down)) / (2 * step), rel=1e-5, abs=1e-7), i


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("batch", [1, 10, 16, 50])
@pytest.mark.parametrize("part", ["all", "body", "head"])
def test_an_sgd_epoch_matches_numpy_steps_with_momentum_l2_and_the_hook(dtype, rtol, batch, part):
    """Every value, or only the body's or the head's (FedRep's phases): the rest and its velocity stay put."""
    layout, X, y, theta = problem("softmax", dtype, rows=53)
    sgd_epoch, *_ = calls("softmax", "tanh")
    rng = np.random.default_rng(2)
    order = rng.permutation(53).astype(np.int64)
    anchor = (theta + 0.01).astype(dtype)
    correction = (0.001 * rng.standard_normal(layout.size)).astype(dtype)
    lr, momentum, l2, mu = 0.1, 0.9, 1e-3, 0.05
    head = int(layout.offsets[-1, 0])
    lo, hi = {"all": (0, layout.size), "body": (0, head), "head": (head, layout.size)}[part]
    buffers = MlpBuffers.allocate(layout, batch, dtype)
    start_velocity = (0.01 * rng.standard_normal(layout.size)).astype(dtype)
    mine, velocity, grad = theta.copy(), start_velocity.copy(), np.zeros(layout.size, dtype)
    sgd_epoch(mine, layout.offsets, np.array(layout.widths), X, y, velocity, grad, buffers.A, buffers.D, buffers.G,
              buffers.E, order, batch, lr, momentum, l2, anchor, mu, correction, lo, hi)
    want, want_velocity = theta.astype(np.float64), start_velocity.astype(np.float64)
    penalised = layout.penalised()
    trained = np.zeros(layout.size, dtype=bool)
    trained[lo:hi] = True
    for s in range(0, 53, batch):
        rows = order[s:s + batch]
        _, g = naive.mlp_loss_and_grad_sum(layout, "tanh", "softmax", X[rows], y[rows], want)
        g = g / len(rows) + l2 * want * penalised + mu * (want - anchor) + correction
        want_velocity = np.where(trained, momentum * want_velocity + g, want_velocity)
        want = np.where(trained, want - lr * want_velocity, want)
    np.testing.assert_allclose(mine, want, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(velocity, want_velocity, rtol=rtol, atol=rtol)
    assert mine[~trained].tobytes() == theta[~trained].tobytes()  # frozen exactly


def test_the_layout_is_views_into_one_vector_and_l2_spares_the_biases():
    layout = MlpLayout((4, 3, 2))
    theta = np.arange(layout.size, dtype=np.float64)
    assert layout.size == 4 * 3 + 3 + 3 * 2 + 2
    assert np.shares_memory(layout.weights(theta, 1), theta) and layout.weights(theta, 1).shape == (3, 2)
    assert layout.bias(theta, 0).tolist() == [12.0, 13.0, 14.0]
    assert layout.penalised().sum() == 4 * 3 + 3 * 2
    expected = 0.5 * 0.1 * float(np.sum(theta[layout.penalised()] ** 2))
    assert weight_penalty(theta, layout.offsets, 0.1) == pytest.approx(expected)


def test_initialisation_is_seeded_and_scaled_per_activation():
    layout = MlpLayout((400, 300, 10))
    he = layout.initial(np.random.default_rng(0), "relu", np.float32)
    assert np.array_equal(he, layout.initial(np.random.default_rng(0), "relu", np.float32)) and he.dtype == np.float32
    assert np.std(layout.weights(he, 0)) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    glorot = layout.initial(np.random.default_rng(0), "tanh", np.float64)
    assert np.abs(layout.weights(glorot, 0)).max() <= np.sqrt(6 / 700)
    assert not layout.bias(glorot, 0).any()


@pytest.mark.parametrize("threads", [2, 3])
def test_the_threaded_gradient_equals_the_serial_one_and_repeats_bitwise(threads):
    from mpifl.compile import set_threads
    from mpifl.kernels import ModelKernels
    from mpifl.model import ModelSpec

    spec = ModelSpec(MODELS["mlp"], 5, 3, np.dtype("float64"), output="softmax", hidden=(7, 6), activation="relu")
    _, X, y, theta = problem("softmax", np.float64, rows=700)
    serial, threaded = ModelKernels(spec, 1), ModelKernels(spec, threads)
    set_threads(threads)
    try:
        want, got, again = (np.zeros(spec.size) for _ in range(3))
        loss = serial.full_gradient_sum(X, y, theta, want, want_loss=True)
        assert threaded.full_gradient_sum(X, y, theta, got, want_loss=True) == pytest.approx(loss, rel=1e-12)
        threaded.full_gradient_sum(X, y, theta, again, want_loss=True)
    finally:
        set_threads(1)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)
    assert got.tobytes() == again.tobytes()


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("threads", [1, pytest.param(2, marks=pytest.mark.slow)])  # threads: the threaded test below
def test_csr_rows_give_the_dense_results(dtype, rtol, threads):
    """The first layer reads CSR rows from their arrays; gradients, steps and evaluation match dense rows."""
    from mpifl.compile import set_threads
    from mpifl.data.sparse import CSR
    from mpifl.kernels import ModelKernels
    from mpifl.model import ModelSpec

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 40)) * (rng.random((300, 40)) < 0.1)  # about 4 nonzeros a row
    X = X.astype(dtype)
    y = rng.integers(0, 3, 300).astype(dtype)
    dense_spec = ModelSpec(MODELS["mlp"], 40, 3, np.dtype(dtype), output="softmax", hidden=(9, 7), activation="tanh")
    sparse_spec = ModelSpec(MODELS["mlp"], 40, 3, np.dtype(dtype), sparse=True, output="softmax", hidden=(9, 7),
                            activation="tanh")
    theta = dense_spec.initial(4)
    dense, sparse = ModelKernels(dense_spec, threads), ModelKernels(sparse_spec, threads)
    Xs = CSR.from_dense(X)
    set_threads(threads)
    try:
        want, got = np.zeros(dense_spec.size, dtype), np.zeros(dense_spec.size, dtype)
        assert sparse.full_gradient_sum(Xs, y, theta, got, True) == pytest.approx(
            dense.full_gradient_sum(X, y, theta, want, True), rel=rtol)
        np.testing.assert_allclose(got, want, rtol=rtol * 10, atol=rtol * np.abs(want).max())
        order = rng.permutation(300).astype(np.int64)
        steps = []
        for kernels, rows in ((dense, X), (sparse, Xs)):
            point, velocity, grad = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
            kernels.sgd_epoch(rows, y, point, velocity, grad, order, 16, 0.1, 0.9, 1e-3)
            steps.append(point)
        np.testing.assert_allclose(steps[1], steps[0], rtol=rtol * 10, atol=rtol)
        batch_want, batch_got = np.zeros_like(theta), np.zeros_like(theta)
        dense.batch_gradient_sum(X, y, theta, order, 5, 60, batch_want)
        sparse.batch_gradient_sum(Xs, y, theta, order, 5, 60, batch_got)
        np.testing.assert_allclose(batch_got, batch_want, rtol=rtol * 10, atol=rtol * np.abs(batch_want).max())
        assert sparse.evaluate_sums(Xs, y, theta)[1] == dense.evaluate_sums(X, y, theta)[1]
    finally:
        set_threads(1)

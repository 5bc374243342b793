"""The Numba CNN: gradients by finite differences for every layer and link, a plain NumPy reference of the
forward pass, float32 against float64, the reference architectures' sizes, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from mpifl import config
from mpifl.data.catalog import model_spec
from mpifl.errors import ConfigError
from mpifl.kernels import ModelKernels
from mpifl.model import ModelSpec
from mpifl.models import MODELS

RNG = np.random.default_rng(3)
LAYERS = ("conv 3 4 same", "pool", "conv 3 3 valid", "dense 5")  # every layer kind, both paddings


def small(link: str, dtype=np.float64, classes: int = 3) -> ModelSpec:
    return ModelSpec(MODELS["cnn"], 2 * 6 * 6, classes if link != "linear" else 1, np.dtype(dtype), output=link,
                     layers=LAYERS, input_shape=(2, 6, 6))


def problem(spec: ModelSpec, n: int = 7):
    theta = (spec.initial(1) + 0.05 * RNG.standard_normal(spec.shape)).astype(spec.dtype)
    X = RNG.standard_normal((n, spec.n_features)).astype(spec.dtype)
    y = (RNG.integers(0, spec.n_classes, n) if spec.link != "linear" else RNG.standard_normal(n)).astype(spec.dtype)
    return theta, X, y


def numpy_loss(spec: ModelSpec, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """The network written again with NumPy arrays: zero padding, patches, 2x2 reshape-max, dense products."""
    layout = spec.parameters
    loss, correct = 0.0, 0
    for x, label in zip(X.astype(np.float64), y):
        a = x.reshape(layout.shape_in)
        for (kind, ci, hi, wi, co, ho, wo, k, pad), (w, b) in zip(layout.prog, layout.poff):
            last = b == layout.poff[-1][1]
            if kind == 0:
                W = theta[w:b].reshape(co, ci, k, k)
                padded = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
                patches = np.stack([padded[:, i:i + k, j:j + k] for i in range(ho) for j in range(wo)])
                a = np.maximum(np.einsum("pckl,ockl->op", patches, W).reshape(co, ho, wo)
                               + theta[b:b + co][:, None, None], 0.0)
            elif kind == 1:
                a = a[:, :2 * ho, :2 * wo].reshape(co, ho, 2, wo, 2).max(axis=(2, 4))
            else:
                z = theta[w:b].reshape(co, -1) @ a.reshape(-1) + theta[b:b + co]
                a = z if last else np.maximum(z, 0.0)
        z = a.reshape(-1)
        if spec.link == "softmax":
            logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
            loss -= logp[int(label)]
            correct += int(np.argmax(z) == label)
        elif spec.link == "logistic":
            loss += np.logaddexp(0.0, z[0]) - label * z[0]
            correct += int((z[0] > 0) == (label > 0.5))
        else:
            loss += 0.5 * (z[0] - label) ** 2
    return loss, correct


@pytest.mark.parametrize("link", ["softmax", "logistic", "linear"])
def test_the_gradient_matches_finite_differences_and_the_loss_the_numpy_network(link):
    spec = small(link)
    kernels = ModelKernels(spec)
    theta, X, y = problem(spec)
    grad = spec.zeros()
    loss = kernels.full_gradient_sum(X, y, theta, grad, want_loss=True)
    reference, correct = numpy_loss(spec, theta, X, y)
    assert loss == pytest.approx(reference, rel=1e-12)
    assert kernels.evaluate_sums(X, y, theta) == (pytest.approx(reference, rel=1e-12), correct)
    h, numeric = 1e-6, np.zeros_like(theta)
    for p in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        numeric[p] = (numpy_loss(spec, up, X, y)[0] - numpy_loss(spec, down, X, y)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("part", ["all", "body", "head"])
def test_an_sgd_epoch_is_the_mean_gradient_step_with_l2_and_the_hook(part):
    """Every value, or only the body's or the output layer's (FedRep's phases): the rest stays put."""
    from mpifl.models.cnn import Cnn

    spec = small("softmax")
    kernels = ModelKernels(spec)
    theta, X, y = problem(spec, 6)
    head = spec.size - Cnn.head_size(spec)
    trainable = {"all": None, "body": slice(0, head), "head": slice(head, spec.size)}[part]
    trained = np.zeros(spec.size, dtype=bool)
    trained[trainable or slice(None)] = True
    anchor, correction = theta + 0.1, 0.01 * RNG.standard_normal(spec.shape)
    expected, velocity = theta.copy(), spec.zeros()
    mask = spec.penalised()
    order = np.array([4, 1, 5, 0, 3, 2])
    for rows in (order[:4], order[4:]):
        grad = spec.zeros()
        kernels.full_gradient_sum(X[rows], y[rows], expected, grad)
        g = grad / rows.size + 0.01 * mask * expected + 0.5 * (expected - anchor) + correction
        velocity = np.where(trained, 0.9 * velocity + g, velocity)
        expected = np.where(trained, expected - 0.1 * velocity, expected)
    got, got_velocity = theta.copy(), spec.zeros()
    kernels.sgd_epoch(X, y, got, got_velocity, spec.zeros(), order, 4, 0.1, 0.9, 0.01, (anchor, 0.5, correction),
                      trainable)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    assert got[~trained].tobytes() == theta[~trained].tobytes()


def test_float32_follows_float64():
    wide, narrow = small("softmax"), small("softmax", np.float32)
    theta, X, y = problem(wide)
    g64, g32 = wide.zeros(), narrow.zeros()
    l64 = ModelKernels(wide).full_gradient_sum(X, y, theta, g64, want_loss=True)
    l32 = ModelKernels(narrow).full_gradient_sum(X.astype(np.float32), y.astype(np.float32),
                                                 theta.astype(np.float32), g32, want_loss=True)
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("architecture, shape, size", [
    ("fedavg", [1, 28, 28], 5 * 5 * 32 + 32 + 5 * 5 * 32 * 64 + 64 + 7 * 7 * 64 * 512 + 512 + 512 * 10 + 10),
    ("niid", [1, 28, 28], 5 * 5 * 6 + 6 + 5 * 5 * 6 * 16 + 16 + 4 * 4 * 16 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10),
])
def test_the_reference_architectures_have_the_papers_parameter_counts(architecture, shape, size):
    spec = ModelSpec(MODELS["cnn"], 784, 10, np.dtype(np.float32), output="softmax",
                     layers=tuple(__import__("mpifl.models.cnn", fromlist=["x"]).ARCHITECTURES[architecture]),
                     input_shape=tuple(shape))
    assert spec.size == size  # FedAvg's CNN: 1,663,370 parameters, as McMahan et al. report


@pytest.mark.parametrize("overrides, message", [
    (["model.kind=cnn", "model.architecture=custom", 'model.layers=["conv 4 8 same"]'], "'model.layers' parameter"),
    (["model.kind=cnn", "model.architecture=custom", 'model.layers=["dense 0"]'], "'model.layers' parameter"),
    (["model.kind=cnn", "model.input_shape=[1, 7, 7]"], "model.input_shape [1, 7, 7] must be [channels, height, width]"),
    (["model.kind=cnn", "model.architecture=niid"], "shrinks a (1, 8, 8) input to nothing"),
    (["model.kind=cnn", "data.name=synthetic", "model.output=logistic"], "not a square image"),
])
def test_bad_networks_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ConfigError) as info:
        cfg = config.load(overrides=overrides)
        model_spec(cfg).parameters
    assert message in str(info.value)

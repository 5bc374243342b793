"""Built-in data sets: handwritten digits (shipped) and synthetic linear models."""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from mpifl.rng import Purpose, stream

DIGITS_CLASSES = 10


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (UCI optdigits test set, as in scikit-learn), scaled to [0, 1].

    The file ships inside the package, so nothing is downloaded at run time.
    """
    with resources.files("mpifl.data").joinpath("digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as archive:
            images = archive["images"]
            labels = archive["labels"]
    return images.astype(np.float64) / 16.0, labels.astype(np.float64)


def make_synthetic(
    n_samples: int, n_features: int, n_classes: int, noise: float, regression: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows x ~ N(0, I) labelled by a random linear model plus Gaussian noise.

    For regression the target is ``x . w + noise * e``; for classification the
    label is ``argmax(x W + noise * E)``, so ``noise`` sets the Bayes error.
    """
    rng = stream(seed, Purpose.SYNTHETIC)
    X = rng.standard_normal((n_samples, n_features))
    if regression:
        w = rng.standard_normal(n_features) / np.sqrt(n_features)
        y = X @ w + noise * rng.standard_normal(n_samples)
        return X, y
    W = rng.standard_normal((n_features, n_classes)) / np.sqrt(n_features)
    logits = X @ W + noise * rng.standard_normal((n_samples, n_classes))
    return X, np.argmax(logits, axis=1).astype(np.float64)


def synthetic_part(
    n_samples: int, n_features: int, n_classes: int, noise: float, regression: bool, seed: int, part: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of part ``part`` (a worker, a client, or a test set), generated where they are used.

    The true model comes from (seed, model) and the rows from (seed, part), so
    any number of ranks can each make their own rows of one common problem,
    with no files and no communication: weak-scaling studies of any size.
    """
    rng = stream(seed, Purpose.SYNTHETIC, part)
    X = rng.standard_normal((n_samples, n_features))
    if regression:
        w = _true_model(seed, n_features, 0)
        return X, X @ w + noise * rng.standard_normal(n_samples)
    W = _true_model(seed, n_features, n_classes)
    logits = X @ W + noise * rng.standard_normal((n_samples, n_classes))
    return X, np.argmax(logits, axis=1).astype(np.float64)


@functools.lru_cache(maxsize=8)
def _true_model(seed: int, n_features: int, n_classes: int) -> np.ndarray:
    """The common problem's weights (n_classes 0: regression's vector), drawn once per process: a population of
    millions of clients would otherwise draw them once per client."""
    model = stream(seed, Purpose.SYNTHETIC_MODEL)
    shape = (n_features, n_classes) if n_classes else n_features
    W = model.standard_normal(shape) / np.sqrt(n_features)
    W.flags.writeable = False
    return W


FEDPROX_FEATURES = 60
FEDPROX_CLASSES = 10
FEDPROX_TRAIN_SHARE = 0.9


def fedprox_synthetic_client(seed: int, client: int, alpha: float, beta: float, iid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Client ``client``'s rows of Synthetic(alpha, beta) from the FedProx paper (Li et al. 2020, section 5.1).

    The recipe of the authors' generator, which takes alpha and beta as
    standard deviations: n_k = int(lognormal(4, 2)) + 50 rows; u_k ~ N(0, alpha),
    B_k ~ N(0, beta), v_k ~ N(B_k, 1) per feature; W_k (60 x 10) and b_k ~ N(u_k, 1);
    x ~ N(v_k, diag(j^-1.2)); y = argmax(softmax(x W_k + b_k)).  The IID
    variant shares one W, b ~ N(0, 1) and draws x ~ N(0, diag(j^-1.2)).
    Each client has its own stream (seed, client), so any rank can make any
    client's rows without the others.
    """
    rng = stream(seed, Purpose.FEDPROX_SYNTHETIC, 0, client)
    n = _fedprox_rows(rng)
    d, classes = FEDPROX_FEATURES, FEDPROX_CLASSES
    if iid:
        shared = stream(seed, Purpose.FEDPROX_SYNTHETIC, 1)
        W, b = shared.normal(0.0, 1.0, (d, classes)), shared.normal(0.0, 1.0, classes)
        v = np.zeros(d)
    else:
        u = rng.normal(0.0, alpha)
        centre = rng.normal(0.0, beta)
        v = rng.normal(centre, 1.0, d)
        W, b = rng.normal(u, 1.0, (d, classes)), rng.normal(u, 1.0, classes)
    scale = np.arange(1, d + 1, dtype=np.float64) ** -0.6  # standard deviations sqrt(j^-1.2)
    X = v + rng.standard_normal((n, d)) * scale
    y = np.argmax(X @ W + b, axis=1).astype(np.float64)  # softmax is monotone: argmax of the logits
    return X, y


def _fedprox_rows(rng: np.random.Generator) -> int:
    """n_k = int(lognormal(4, 2)) + 50: the first draw of a client's stream."""
    return int(rng.lognormal(4, 2)) + 50


def fedprox_client_rows(seed: int, client: int) -> int:
    """Client ``client``'s number of rows, without generating them."""
    return _fedprox_rows(stream(seed, Purpose.FEDPROX_SYNTHETIC, 0, client))


def fedprox_split(n: int) -> int:
    """Rows of a client's Synthetic(alpha, beta) data that are for training; the rest are its test rows."""
    return int(FEDPROX_TRAIN_SHARE * n)

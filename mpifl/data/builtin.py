"""Built-in data sets: handwritten digits (shipped) and synthetic linear models."""

from __future__ import annotations

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
    model = stream(seed, Purpose.SYNTHETIC_MODEL)
    rng = stream(seed, Purpose.SYNTHETIC, part)
    X = rng.standard_normal((n_samples, n_features))
    if regression:
        w = model.standard_normal(n_features) / np.sqrt(n_features)
        return X, X @ w + noise * rng.standard_normal(n_samples)
    W = model.standard_normal((n_features, n_classes)) / np.sqrt(n_features)
    logits = X @ W + noise * rng.standard_normal((n_samples, n_classes))
    return X, np.argmax(logits, axis=1).astype(np.float64)

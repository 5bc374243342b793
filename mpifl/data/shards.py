"""What each rank trains or evaluates on, derived from the config and its index.

For the built-in sets every rank derives its own share from the same seeded
split and partition; no data is sent between ranks.  The server's share is the
test split only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpifl.config import Config
from mpifl.data.builtin import DIGITS_CLASSES, load_digits, make_synthetic
from mpifl.data.partition import contiguous, partition, split_train_test
from mpifl.errors import DataError
from mpifl.model import ModelSpec
from mpifl.rng import Purpose, stream


@dataclass(frozen=True)
class Shard:
    """Rows a rank owns: C-contiguous X (n, d) and y (n,) in the model's dtype."""

    X: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]


def model_spec(cfg: Config) -> ModelSpec:
    """The model the config asks for, sized to its data source."""
    if cfg["data.name"] == "digits":
        n_features, n_classes = 64, DIGITS_CLASSES
    else:
        n_features, n_classes = cfg["data.n_features"], cfg["data.n_classes"]
    if cfg["model.kind"] == "linear":
        n_classes = 1
    return ModelSpec(cfg["model.kind"], n_features, n_classes, np.dtype(cfg["model.dtype"]))


def _source(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    if cfg["data.name"] == "digits":
        return load_digits()
    return make_synthetic(
        cfg["data.n_samples"], cfg["data.n_features"], cfg["data.n_classes"],
        cfg["data.noise"], cfg["model.kind"] == "linear", cfg["seed"],
    )


def _split(cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = _source(cfg)
    train, test = split_train_test(y.size, cfg["data.test_fraction"], stream(cfg["seed"], Purpose.SPLIT))
    return X, y, train, test


def _shard(X: np.ndarray, y: np.ndarray, rows: np.ndarray, dtype: np.dtype, name: str) -> Shard:
    shard = Shard(np.ascontiguousarray(X[rows], dtype=dtype), np.ascontiguousarray(y[rows], dtype=dtype))
    if not (np.isfinite(shard.X).all() and np.isfinite(shard.y).all()):
        raise DataError(f"The data of {name} contains NaN or inf values.")
    return shard


def _train_parts(cfg: Config, y: np.ndarray, train: np.ndarray, parts: int) -> list[np.ndarray]:
    labels = y[train]
    method = cfg["data.partition"]
    if cfg["model.kind"] == "linear" and method == "dirichlet":
        raise DataError("data.partition 'dirichlet' needs class labels; model.kind 'linear' has none. Use 'iid'.")
    pieces = partition(method, labels, parts, cfg["data.alpha"], stream(cfg["seed"], Purpose.PARTITION))
    return [train[p] for p in pieces]


def client_shard(cfg: Config, client: int, n_clients: int) -> Shard:
    """Training rows of federated client ``client`` (0-based) out of ``n_clients``."""
    X, y, train, _ = _split(cfg)
    rows = _train_parts(cfg, y, train, n_clients)[client]
    return _shard(X, y, rows, np.dtype(cfg["model.dtype"]), f"client {client}")


def server_test_set(cfg: Config) -> Shard:
    """The test split, held by the federated server."""
    X, y, _, test = _split(cfg)
    return _shard(X, y, test, np.dtype(cfg["model.dtype"]), "the test set")


def worker_shards(cfg: Config, worker: int, n_workers: int) -> tuple[Shard, Shard]:
    """(train, test) rows of distributed worker ``worker``; the test split is cut evenly."""
    X, y, train, test = _split(cfg)
    dtype = np.dtype(cfg["model.dtype"])
    train_rows = _train_parts(cfg, y, train, n_workers)[worker]
    test_rows = test[contiguous(test.size, n_workers)[worker]]
    return (
        _shard(X, y, train_rows, dtype, f"worker {worker}"),
        _shard(X, y, test_rows, dtype, f"the test set of worker {worker}"),
    )

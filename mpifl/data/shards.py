"""What each rank trains or evaluates on, derived from the config and its index.

Sources, by the config:
- data.path, a partition directory: each rank maps only its own clients'
  files (mpifl.data.files); the server maps only the test files;
- data.path, one .npy file (distributed mode): each worker reads its rows;
- data.rows_per_rank: synthetic rows generated on each rank from (seed, part);
- otherwise a built-in set, which every rank derives its own share of from
  the same seeded split and partition.

No data is ever sent between ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.config import Config
from mpifl.data import files
from mpifl.data.builtin import (
    DIGITS_CLASSES,
    load_digits,
    make_synthetic,
    synthetic_part,
)
from mpifl.data.partition import _bounds, contiguous, partition, split_train_test
from mpifl.data.sparse import CSR
from mpifl.errors import DataError, RankCountError
from mpifl.kernels.checks import all_finite
from mpifl.model import ModelSpec
from mpifl.rng import Purpose, stream


@dataclass(frozen=True)
class Shard:
    """Rows a rank owns: C-contiguous X (n, d) and y (n,) in the model's dtype."""

    X: np.ndarray | CSR
    y: np.ndarray

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def sparse(self) -> bool:
        return isinstance(self.X, CSR)


def model_spec(cfg: Config) -> ModelSpec:
    """The model the config asks for, sized to its data source (a partition's manifest, say)."""
    sparse = False
    if cfg["data.path"]:
        n_features, n_classes, task = _file_shape(cfg)
        _check_task(cfg, n_classes, task)
        sparse = files.is_partition(cfg["data.path"]) and files.manifest_of(cfg["data.path"]).sparse
    elif cfg["data.name"] == "digits":
        n_features, n_classes = 64, DIGITS_CLASSES
    else:
        n_features, n_classes = cfg["data.n_features"], cfg["data.n_classes"]
    if cfg["model.kind"] == "linear":
        n_classes = 1
    return ModelSpec(cfg["model.kind"], n_features, n_classes, np.dtype(cfg["model.dtype"]), sparse)


def _file_shape(cfg: Config) -> tuple[int, int, str]:
    path = cfg["data.path"]
    if files.is_partition(path):
        m = files.manifest_of(path)
        return m.n_features, m.n_classes, m.doc["task"]
    if not Path(path).exists():
        raise DataError(f"data.path {path} does not exist.")
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read as .npy (truncated or corrupt?): {exc}") from None
    if len(shape) != 2 or shape[1] < 2:
        raise DataError(f"{path} must hold a 2-D array of features and a label column; its shape is {shape}.")
    task = "regression" if cfg["model.kind"] == "linear" else "classification"
    return shape[1] - 1, cfg["data.n_classes"], task


def _check_task(cfg: Config, n_classes: int, task: str) -> None:
    where = cfg["data.path"]
    if task == "regression" and cfg["model.kind"] != "linear":
        raise DataError(f"{where} holds a regression task; use model.kind = \"linear\".")
    if task == "classification" and cfg["model.kind"] == "linear":
        raise DataError(f"{where} holds {n_classes} classes; use model.kind = \"softmax\" or \"logistic\".")
    if cfg["model.kind"] == "logistic" and n_classes != 2:
        raise DataError(f"{where} holds {n_classes} classes; model.kind 'logistic' needs 2. Use \"softmax\".")


def client_count(cfg: Config, size: int) -> int:
    """K, the number of federated clients: the partition's, data.clients, or one per client rank."""
    if cfg["data.path"]:
        if not files.is_partition(cfg["data.path"]):
            raise DataError(
                f"Federated mode needs a partition directory (python -m mpifl partition); data.path "
                f"{cfg['data.path']} is a single file, which serves distributed mode."
            )
        return files.manifest_of(cfg["data.path"]).n_clients
    return cfg["data.clients"] or size - 1


def hosted(n_clients: int, n_hosts: int, host: int) -> range:
    """The clients host ``host`` of ``n_hosts`` runs: a contiguous block, so gathers stay in client order."""
    lo, hi = _bounds(n_clients, n_hosts)[host]
    return range(lo, hi)


def check_fit(n_clients: int, n_hosts: int, role: str) -> None:
    if n_clients < n_hosts:
        raise RankCountError(
            f"{n_clients} clients cannot fill {n_hosts} {role} ranks: each needs at least one client. "
            f"Start at most {n_clients + (role == 'client')} ranks, or partition into more clients."
        )


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


def client_shards(cfg: Config, clients: range, n_clients: int) -> list[Shard]:
    """Training rows of federated clients ``clients`` (0-based) out of ``n_clients``."""
    dtype = np.dtype(cfg["model.dtype"])
    if cfg["data.path"]:
        parts = files.client_parts(cfg["data.path"], clients, dtype, cfg["data.verify"])
        return [Shard(X, y) for X, y in parts]
    if cfg["data.rows_per_rank"]:
        return [_generated(cfg, cfg["data.rows_per_rank"], 1 + k, f"client {k}") for k in clients]
    X, y, train, _ = _split(cfg)
    rows = _train_parts(cfg, y, train, n_clients)
    return [_shard(X, y, rows[k], dtype, f"client {k}") for k in clients]


def client_shard(cfg: Config, client: int, n_clients: int) -> Shard:
    return client_shards(cfg, range(client, client + 1), n_clients)[0]


def server_test_set(cfg: Config) -> Shard:
    """The test split, held by the federated server."""
    if cfg["data.path"]:
        return Shard(*files.test_part(cfg["data.path"], np.dtype(cfg["model.dtype"]), cfg["data.verify"]))
    if cfg["data.rows_per_rank"]:
        return _generated(cfg, _test_rows_per_part(cfg), 0, "the test set")
    X, y, _, test = _split(cfg)
    return _shard(X, y, test, np.dtype(cfg["model.dtype"]), "the test set")


def worker_shards(cfg: Config, worker: int, n_workers: int) -> tuple[Shard, Shard]:
    """(train, test) rows of distributed worker ``worker``; the test split is cut evenly."""
    dtype = np.dtype(cfg["model.dtype"])
    path = cfg["data.path"]
    if path and files.is_partition(path):
        manifest = files.manifest_of(path)
        check_fit(manifest.n_clients, n_workers, "worker")
        mine = hosted(manifest.n_clients, n_workers, worker)
        train = Shard(*files.concat(files.client_parts(path, mine, dtype, cfg["data.verify"])))
        share = _bounds(int(manifest.doc["test"]["rows"]), n_workers)[worker]
        return train, Shard(*files.test_part(path, dtype, cfg["data.verify"], share))
    if path:
        (Xt, yt), (Xs, ys), _ = files.npy_rows(path, cfg["data.label_column"], cfg["data.test_fraction"],
                                              worker, n_workers, dtype)
        name = f"rows of worker {worker} in {path}"
        return _checked(Shard(Xt, yt), name, cfg), _checked(Shard(Xs, ys), name, cfg)
    if cfg["data.rows_per_rank"]:
        return (_generated(cfg, cfg["data.rows_per_rank"], 1 + worker, f"worker {worker}"),
                _generated(cfg, _test_rows_per_part(cfg), -1 - worker, f"the test rows of worker {worker}"))
    X, y, train, test = _split(cfg)
    train_rows = _train_parts(cfg, y, train, n_workers)[worker]
    test_rows = test[contiguous(test.size, n_workers)[worker]]
    return (
        _shard(X, y, train_rows, dtype, f"worker {worker}"),
        _shard(X, y, test_rows, dtype, f"the test set of worker {worker}"),
    )


def _test_rows_per_part(cfg: Config) -> int:
    f = cfg["data.test_fraction"]
    return int(round(cfg["data.rows_per_rank"] * f / (1 - f)))


def _generated(cfg: Config, rows: int, part: int, name: str) -> Shard:
    X, y = synthetic_part(rows, cfg["data.n_features"], cfg["data.n_classes"], cfg["data.noise"],
                          cfg["model.kind"] == "linear", cfg["seed"], part % (2**32))
    return _shard(X, y, np.arange(rows), np.dtype(cfg["model.dtype"]), name)


def _checked(shard: Shard, name: str, cfg: Config) -> Shard:
    if not (all_finite(shard.X.reshape(-1)) and all_finite(shard.y)):
        raise DataError(f"The {name} contain NaN or inf values.")
    if cfg["model.kind"] != "linear":
        y = shard.y
        bad = (y != np.floor(y)) | (y < 0) | (y >= cfg["data.n_classes"])
        if bad.any():
            raise DataError(f"The {name} include label {y[bad][0]:g}, outside 0..{cfg['data.n_classes'] - 1} "
                            "(data.n_classes).")
    return shard

"""What each rank trains or evaluates on: the job's data source, resolved once from the config.

``resolve(cfg)`` looks at data.path and data.name once and returns one of:
- PartitionFiles: a directory from 'python -m mpifl partition'; each rank maps
  only its own clients' files, the server only the test files;
- NpyTable: one .npy file (distributed mode); each worker reads its rows;
- PerRankSynthetic: data.rows_per_rank rows generated on each rank from (seed, part);
- BuiltinSplit: digits or synthetic, which every rank derives its own share
  of from the same seeded split and partition;
- FedproxSynthetic: the FedProx paper's Synthetic(alpha, beta), each client
  generated from (seed, client), with its own 90/10 train/test split.

No data is ever sent between ranks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpifl.config import Config, output_key, output_kind
from mpifl.data import files
from mpifl.data.builtin import (
    DIGITS_CLASSES,
    FEDPROX_CLASSES,
    FEDPROX_FEATURES,
    fedprox_client_rows,
    fedprox_split,
    fedprox_synthetic_client,
    load_digits,
    make_synthetic,
    synthetic_part,
)
from mpifl.data.partition import _bounds, contiguous, partition, split_train_test
from mpifl.data.sparse import CSR
from mpifl.errors import DataError, RankCountError
from mpifl.kernels.checks import all_finite
from mpifl.model import ModelSpec
from mpifl.models import MODELS
from mpifl.rng import Purpose, stream

FEDPROX_DEFAULT_CLIENTS = 30


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


@dataclass(frozen=True)
class ClientData:
    """One federated client's rows: what it trains on, and its own test rows where the source has them."""

    train: Shard
    test: Shard | None = None


@dataclass(frozen=True)
class DataShape:
    n_features: int
    n_classes: int
    task: str  # "classification" or "regression"
    sparse: bool = False


def hosted(n_clients: int, n_hosts: int, host: int) -> range:
    """The clients host ``host`` of ``n_hosts`` runs: a contiguous block, so gathers stay in client order."""
    lo, hi = _bounds(n_clients, n_hosts)[host]
    return range(lo, hi)


def balanced_blocks(rows: list[int], hosts: int) -> list[range]:
    """Contiguous blocks of clients, one per host, whose row totals are as even as contiguity allows.

    A round lasts as long as its busiest client rank, and with clients of
    very unequal sizes (the FedProx benchmark's are log-normal) equal client
    counts leave most ranks waiting for one.  The blocks stay contiguous, so
    the gathers stay in client order, and they are a pure function of the
    sizes, so every rank computes the same ones.  Every host gets a client.
    """
    n = len(rows)
    prefix = np.concatenate(([0], np.cumsum(np.asarray(rows, dtype=np.float64))))
    cuts = [0]
    for h in range(1, hosts):
        target = prefix[-1] * h / hosts
        above = int(np.searchsorted(prefix, target))  # first cut whose prefix reaches the target
        cut = above if above < len(prefix) and (above == 0 or prefix[above] - target <= target - prefix[above - 1]) \
            else above - 1
        cuts.append(min(max(cut, cuts[-1] + 1), n - (hosts - h)))
    cuts.append(n)
    return [range(lo, hi) for lo, hi in zip(cuts, cuts[1:])]


def check_fit(n_clients: int, n_hosts: int, role: str) -> None:
    if n_clients < n_hosts:
        raise RankCountError(
            f"{n_clients} clients cannot fill {n_hosts} {role} ranks: each needs at least one client. "
            f"Start at most {n_clients + (role == 'client')} ranks, or partition into more clients."
        )


class DataSource(ABC):
    """Where a job's rows come from; every method returns only the caller's own share."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dtype = np.dtype(cfg["model.dtype"])

    @abstractmethod
    def shape(self) -> DataShape:
        """Features, classes and task, from the source's metadata (no rows are read)."""

    def n_clients(self, ranks: int) -> int:
        """K, the number of federated clients: data.clients, or one per client rank."""
        return self.cfg["data.clients"] or ranks - 1

    @abstractmethod
    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        """The rows of federated clients ``ids`` (0-based) out of ``n_clients``."""

    @abstractmethod
    def client_rows(self, n_clients: int) -> list[int]:
        """Every client's number of training rows (to balance client ranks), without loading the rows."""

    @abstractmethod
    def server_test(self) -> Shard:
        """The test rows the federated server holds."""

    @abstractmethod
    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        """(train, test) rows of distributed worker ``worker``."""

    @abstractmethod
    def train_rows(self, ranks: int, workers: int) -> int:
        """Training rows of the whole job (for traffic models), without reading rows where possible."""

    def _shard(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray, name: str) -> Shard:
        shard = Shard(np.ascontiguousarray(X[rows], dtype=self.dtype), np.ascontiguousarray(y[rows], dtype=self.dtype))
        if not (np.isfinite(shard.X).all() and np.isfinite(shard.y).all()):
            raise DataError(f"The data of {name} contains NaN or inf values.")
        return shard


class BuiltinSplit(DataSource):
    """digits or synthetic: one seeded train/test split, partitioned over clients or workers."""

    def shape(self) -> DataShape:
        cfg = self.cfg
        regression = output_kind(cfg) == "linear"
        if cfg["data.name"] == "digits":
            return DataShape(64, DIGITS_CLASSES, "classification")
        return DataShape(cfg["data.n_features"], cfg["data.n_classes"], "regression" if regression else "classification")

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        if cfg["data.name"] == "digits":
            X, y = load_digits()
        else:
            X, y = make_synthetic(cfg["data.n_samples"], cfg["data.n_features"], cfg["data.n_classes"],
                                  cfg["data.noise"], output_kind(cfg) == "linear", cfg["seed"])
        train, test = split_train_test(y.size, cfg["data.test_fraction"], stream(cfg["seed"], Purpose.SPLIT))
        return X, y, train, test

    def _parts(self, y: np.ndarray, train: np.ndarray, parts: int) -> list[np.ndarray]:
        cfg = self.cfg
        method = cfg["data.partition"]
        if output_kind(cfg) == "linear" and method == "dirichlet":
            raise DataError("data.partition 'dirichlet' needs class labels; model.kind 'linear' has none. Use 'iid'.")
        pieces = partition(method, y[train], parts, cfg["data.alpha"], stream(cfg["seed"], Purpose.PARTITION))
        return [train[p] for p in pieces]

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        X, y, train, _ = self._rows()
        rows = self._parts(y, train, n_clients)
        return [ClientData(self._shard(X, y, rows[k], f"client {k}")) for k in ids]

    def client_rows(self, n_clients: int) -> list[int]:
        _, y, train, _ = self._rows()
        return [part.size for part in self._parts(y, train, n_clients)]

    def server_test(self) -> Shard:
        X, y, _, test = self._rows()
        return self._shard(X, y, test, "the test set")

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        X, y, train, test = self._rows()
        train_rows = self._parts(y, train, n_workers)[worker]
        test_rows = test[contiguous(test.size, n_workers)[worker]]
        return (self._shard(X, y, train_rows, f"worker {worker}"),
                self._shard(X, y, test_rows, f"the test set of worker {worker}"))

    def train_rows(self, ranks: int, workers: int) -> int:
        total = load_digits()[1].size if self.cfg["data.name"] == "digits" else self.cfg["data.n_samples"]
        return total - round(total * self.cfg["data.test_fraction"])


class PerRankSynthetic(BuiltinSplit):
    """data.rows_per_rank: each worker or client generates its own rows of one common synthetic problem."""

    def _generated(self, rows: int, part: int, name: str) -> Shard:
        cfg = self.cfg
        X, y = synthetic_part(rows, cfg["data.n_features"], cfg["data.n_classes"], cfg["data.noise"],
                              output_kind(cfg) == "linear", cfg["seed"], part % (2**32))
        return self._shard(X, y, np.arange(rows), name)

    def _test_rows(self) -> int:
        f = self.cfg["data.test_fraction"]
        return int(round(self.cfg["data.rows_per_rank"] * f / (1 - f)))

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        return [ClientData(self._generated(self.cfg["data.rows_per_rank"], 1 + k, f"client {k}")) for k in ids]

    def client_rows(self, n_clients: int) -> list[int]:
        return [self.cfg["data.rows_per_rank"]] * n_clients

    def server_test(self) -> Shard:
        return self._generated(self._test_rows(), 0, "the test set")

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        return (self._generated(self.cfg["data.rows_per_rank"], 1 + worker, f"worker {worker}"),
                self._generated(self._test_rows(), -1 - worker, f"the test rows of worker {worker}"))

    def train_rows(self, ranks: int, workers: int) -> int:
        return self.cfg["data.rows_per_rank"] * workers


class FedproxSynthetic(DataSource):
    """Synthetic(alpha, beta) of the FedProx paper: K clients (30 by default), each with a 90/10 split.

    The server's test set is the union of the clients' test rows, in client order.
    """

    def shape(self) -> DataShape:
        return DataShape(FEDPROX_FEATURES, FEDPROX_CLASSES, "classification")

    def n_clients(self, ranks: int) -> int:
        return self.cfg["data.clients"] or FEDPROX_DEFAULT_CLIENTS

    def _client(self, k: int) -> tuple[Shard, Shard]:
        cfg = self.cfg
        X, y = fedprox_synthetic_client(cfg["seed"], k, cfg["data.fedprox_alpha"], cfg["data.fedprox_beta"],
                                        cfg["data.fedprox_iid"])
        cut = fedprox_split(y.size)
        return (self._shard(X, y, np.arange(cut), f"client {k}"),
                self._shard(X, y, np.arange(cut, y.size), f"the test rows of client {k}"))

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        return [ClientData(*self._client(k)) for k in ids]

    def client_rows(self, n_clients: int) -> list[int]:
        return [fedprox_split(fedprox_client_rows(self.cfg["seed"], k)) for k in range(n_clients)]

    def _union(self, ids: range, part: int) -> Shard:
        shards = [self._client(k)[part] for k in ids]
        return Shard(np.concatenate([s.X for s in shards]), np.concatenate([s.y for s in shards]))

    def server_test(self) -> Shard:
        return self._union(range(self.n_clients(0)), 1)

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        k = self.n_clients(0)
        check_fit(k, n_workers, "worker")
        mine = hosted(k, n_workers, worker)
        return self._union(mine, 0), self._union(mine, 1)

    def train_rows(self, ranks: int, workers: int) -> int:
        return sum(self._client(k)[0].n for k in range(self.n_clients(ranks)))


class PartitionFiles(DataSource):
    """A partition directory: per-client files and a manifest; ranks map only their own files."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.path = cfg["data.path"]

    def shape(self) -> DataShape:
        m = files.manifest_of(self.path)
        return DataShape(m.n_features, m.n_classes, m.doc["task"], m.sparse)

    def n_clients(self, ranks: int) -> int:
        return files.manifest_of(self.path).n_clients

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        parts = files.client_parts(self.path, ids, self.dtype, self.cfg["data.verify"])
        return [ClientData(Shard(X, y)) for X, y in parts]

    def client_rows(self, n_clients: int) -> list[int]:
        return [int(c["rows"]) for c in files.manifest_of(self.path).doc["clients"]]

    def server_test(self) -> Shard:
        return Shard(*files.test_part(self.path, self.dtype, self.cfg["data.verify"]))

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        manifest = files.manifest_of(self.path)
        check_fit(manifest.n_clients, n_workers, "worker")
        mine = hosted(manifest.n_clients, n_workers, worker)
        train = Shard(*files.concat(files.client_parts(self.path, mine, self.dtype, self.cfg["data.verify"])))
        share = _bounds(int(manifest.doc["test"]["rows"]), n_workers)[worker]
        return train, Shard(*files.test_part(self.path, self.dtype, self.cfg["data.verify"], share))

    def train_rows(self, ranks: int, workers: int) -> int:
        return sum(int(c["rows"]) for c in files.manifest_of(self.path).doc["clients"])


class NpyTable(DataSource):
    """One .npy file of features and a label column: each distributed worker reads its own rows."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.path = cfg["data.path"]

    def _table_shape(self) -> tuple[int, ...]:
        if not Path(self.path).exists():
            raise DataError(f"data.path {self.path} does not exist.")
        try:
            shape = np.load(self.path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{self.path} cannot be read as .npy (truncated or corrupt?): {exc}") from None
        if len(shape) != 2 or shape[1] < 2:
            raise DataError(f"{self.path} must hold a 2-D array of features and a label column; its shape is {shape}.")
        return shape

    def shape(self) -> DataShape:
        shape = self._table_shape()
        task = "regression" if output_kind(self.cfg) == "linear" else "classification"
        return DataShape(shape[1] - 1, self.cfg["data.n_classes"], task)

    def _federated_only(self):
        raise DataError(
            f"Federated mode needs a partition directory (python -m mpifl partition); data.path "
            f"{self.path} is a single file, which serves distributed mode."
        )

    def n_clients(self, ranks: int) -> int:
        self._federated_only()

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        self._federated_only()

    def client_rows(self, n_clients: int) -> list[int]:
        self._federated_only()

    def server_test(self) -> Shard:
        self._federated_only()

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        (Xt, yt), (Xs, ys), _ = files.npy_rows(self.path, self.cfg["data.label_column"], self.cfg["data.test_fraction"],
                                              worker, n_workers, self.dtype)
        name = f"rows of worker {worker} in {self.path}"
        return self._checked(Shard(Xt, yt), name), self._checked(Shard(Xs, ys), name)

    def train_rows(self, ranks: int, workers: int) -> int:
        n = self._table_shape()[0]
        return n - round(n * self.cfg["data.test_fraction"])

    def _checked(self, shard: Shard, name: str) -> Shard:
        if not (all_finite(shard.X.reshape(-1)) and all_finite(shard.y)):
            raise DataError(f"The {name} contain NaN or inf values.")
        if output_kind(self.cfg) != "linear":
            y = shard.y
            bad = (y != np.floor(y)) | (y < 0) | (y >= self.cfg["data.n_classes"])
            if bad.any():
                raise DataError(f"The {name} include label {y[bad][0]:g}, outside 0..{self.cfg['data.n_classes'] - 1} "
                                "(data.n_classes).")
        return shard


def resolve(cfg: Config) -> DataSource:
    """The one place that decides where the job's data comes from."""
    path = cfg["data.path"]
    if path:
        return PartitionFiles(cfg) if files.is_partition(path) else NpyTable(cfg)
    if cfg["data.name"] == "fedprox_synthetic":
        return FedproxSynthetic(cfg)
    if cfg["data.rows_per_rank"]:
        return PerRankSynthetic(cfg)
    return BuiltinSplit(cfg)


def model_spec(cfg: Config, source: DataSource | None = None) -> ModelSpec:
    """The model the config asks for, sized to its data source (a partition's manifest, say)."""
    shape = (source or resolve(cfg)).shape()
    _check_task(cfg, shape)
    n_classes = 1 if output_kind(cfg) == "linear" else shape.n_classes
    spec = ModelSpec(cfg["model.kind"], shape.n_features, n_classes, np.dtype(cfg["model.dtype"]), shape.sparse,
                     **MODELS[cfg["model.kind"]].spec_fields(cfg.values))
    return spec


def _check_task(cfg: Config, shape: DataShape) -> None:
    where = cfg["data.path"] or f"data.name {cfg['data.name']!r}"
    kind = output_kind(cfg)
    key = output_key(cfg.values)
    if shape.task == "regression" and kind != "linear":
        raise DataError(f"{where} holds a regression task; use {key} = \"linear\".")
    if shape.task == "classification" and kind == "linear":
        raise DataError(f"{where} holds {shape.n_classes} classes; use {key} = \"softmax\" or \"logistic\".")
    if kind == "logistic" and shape.n_classes != 2:
        raise DataError(f"{where} holds {shape.n_classes} classes; {key} 'logistic' needs 2. Use \"softmax\".")


# Shorthands for tests and tools that want one share without holding a source.

def client_shards(cfg: Config, clients: range, n_clients: int) -> list[Shard]:
    return [c.train for c in resolve(cfg).clients(clients, n_clients)]


def client_shard(cfg: Config, client: int, n_clients: int) -> Shard:
    return client_shards(cfg, range(client, client + 1), n_clients)[0]


def server_test_set(cfg: Config) -> Shard:
    return resolve(cfg).server_test()


def worker_shards(cfg: Config, worker: int, n_workers: int) -> tuple[Shard, Shard]:
    return resolve(cfg).worker(worker, n_workers)


def client_count(cfg: Config, size: int) -> int:
    return resolve(cfg).n_clients(size)

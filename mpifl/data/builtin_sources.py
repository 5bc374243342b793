"""The data sets mpifl makes or ships itself: the digits, a synthetic problem, and FedProx's Synthetic(alpha, beta).

Every rank derives its own share of the same seeded table, split and
partition, so no data is ever sent between ranks.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from mpifl.constraints import Flag, Interval
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
from mpifl.data.partition import contiguous, partition, split_train_test
from mpifl.data.shards import ClientData, DataShape, DataSource, Shard, check_fit, hosted
from mpifl.data.sources import Table
from mpifl.errors import ConfigError, DataError
from mpifl.models import output_link
from mpifl.rng import Purpose, stream

FEDPROX_DEFAULT_CLIENTS = 30


class BuiltinSplit(DataSource):
    """One seeded table, one seeded train/test split, partitioned over clients or workers."""

    @abstractmethod
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole table (X, y), the same on every rank."""

    @abstractmethod
    def total_rows(self) -> int:
        """The table's rows, without making it."""

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        X, y = self.table()
        train, test = split_train_test(y.size, cfg.data.test_fraction, stream(cfg.seed, Purpose.SPLIT))
        return X, y, train, test

    def _parts(self, y: np.ndarray, train: np.ndarray, parts: int) -> list[np.ndarray]:
        return [train[p] for p in self._pieces(y, train, parts)]

    def _pieces(self, y: np.ndarray, train: np.ndarray, parts: int) -> list[np.ndarray]:
        """Each part's places among the training rows."""
        cfg = self.cfg
        method = cfg.data.partition
        if output_link(cfg) == "linear" and method == "dirichlet":
            raise DataError("data.partition 'dirichlet' needs class labels; model.kind 'linear' has none. Use 'iid'.")
        return partition(method, y[train], parts, cfg.data.alpha, stream(cfg.seed, Purpose.PARTITION))

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

    def worker_places(self, worker: int, n_workers: int) -> np.ndarray:
        _, y, train, _ = self._rows()
        return self._pieces(y, train, n_workers)[worker]

    def train_rows(self, ranks: int, workers: int) -> int:
        total = self.total_rows()
        return total - round(total * self.cfg.data.test_fraction)


class Digits(BuiltinSplit):
    """The handwritten digits: 1,797 8x8 images of 10 classes, shipped with mpifl."""

    name = "digits"

    @classmethod
    def partition_table(cls, options) -> Table:
        return Table(*load_digits())

    @classmethod
    def check(cls, cfg, link: str, key: str, origin) -> None:
        if link == "logistic":
            raise ConfigError(f"The '{key}' parameter in {origin(key)} is 'logistic' (binary), but data.name "
                              f"'digits' has {DIGITS_CLASSES} classes. Use {key} = \"softmax\".")
        if link == "linear":
            raise ConfigError(f"The '{key}' parameter in {origin(key)} is 'linear' (regression), but data.name "
                              f"'digits' is a classification task. Use {key} = \"softmax\".")

    def shape(self) -> DataShape:
        return DataShape(64, DIGITS_CLASSES, "classification")

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        return load_digits()

    def total_rows(self) -> int:
        return load_digits()[1].size


class Synthetic(BuiltinSplit):
    """A seeded synthetic problem of data.n_samples rows (data.n_features, data.n_classes, data.noise); with
    data.rows_per_rank, each rank generates its own rows instead (PerRankSynthetic)."""

    name = "synthetic"
    parameters = {
        "rows_per_rank": (0, Interval(int, 0, None)),  # generate this many rows per worker or client
        "test_rows": (0, Interval(int, 0, None)),  # rows_per_rank: the server's test rows; 0: from data.test_fraction
    }
    size_key = "n_samples"

    @classmethod
    def partition_table(cls, options) -> Table:
        """The same seeded table a job of these settings makes (data.noise at its default)."""
        return Table(*make_synthetic(options.n_samples, options.n_features, options.n_classes, 0.1, False,
                                     options.seed))

    @classmethod
    def check(cls, cfg, link: str, key: str, origin) -> None:
        if link == "logistic" and cfg.data.n_classes != 2:
            raise ConfigError(f"The 'data.n_classes' parameter in {origin('data.n_classes')} must be 2 for {key} "
                              f"'logistic'. Got {cfg.data.n_classes} instead.")

    @classmethod
    def open(cls, cfg) -> DataSource:
        return PerRankSynthetic(cfg) if cfg.data.rows_per_rank else cls(cfg)

    def shape(self) -> DataShape:
        regression = output_link(self.cfg) == "linear"
        return DataShape(self.cfg.data.n_features, self.cfg.data.n_classes,
                         "regression" if regression else "classification")

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        return make_synthetic(cfg.data.n_samples, cfg.data.n_features, cfg.data.n_classes, cfg.data.noise,
                              output_link(cfg) == "linear", cfg.seed)

    def total_rows(self) -> int:
        return self.cfg.data.n_samples


class PerRankSynthetic(Synthetic):
    """data.rows_per_rank: each worker or client generates its own rows of one common synthetic problem, from
    (seed, client) alone, so a population of millions costs nothing until a client is used."""

    builds_clients_alone = True

    def _generated(self, rows: int, part: int, name: str) -> Shard:
        cfg = self.cfg
        X, y = synthetic_part(rows, cfg.data.n_features, cfg.data.n_classes, cfg.data.noise,
                              output_link(cfg) == "linear", cfg.seed, part % (2**32))
        return self._whole(X, y, name)

    def _test_rows(self) -> int:
        if self.cfg.data.test_rows:
            return self.cfg.data.test_rows
        f = self.cfg.data.test_fraction
        return int(round(self.cfg.data.rows_per_rank * f / (1 - f)))

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        return [ClientData(self._generated(self.cfg.data.rows_per_rank, 1 + k, f"client {k}")) for k in ids]

    def client_rows(self, n_clients: int) -> np.ndarray:
        return np.full(n_clients, self.cfg.data.rows_per_rank, dtype=np.int64)

    def server_test(self) -> Shard:
        return self._generated(self._test_rows(), 0, "the test set")

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        return (self._generated(self.cfg.data.rows_per_rank, 1 + worker, f"worker {worker}"),
                self._generated(self._test_rows(), -1 - worker, f"the test rows of worker {worker}"))

    def worker_places(self, worker: int, n_workers: int) -> np.ndarray:
        rows = self.cfg.data.rows_per_rank  # each worker makes its own rows: they follow the workers' order
        return np.arange(worker * rows, (worker + 1) * rows)

    def train_rows(self, ranks: int, workers: int) -> int:
        return self.cfg.data.rows_per_rank * workers


class FedproxSynthetic(DataSource):
    """Synthetic(alpha, beta) of the FedProx paper: K clients (30 by default), each with a 90/10 split.

    The server's test set is the union of the clients' test rows, in client order.
    """

    name = "fedprox_synthetic"
    builds_clients_alone = True
    parameters = {  # the FedProx paper's Synthetic(alpha, beta): model and input heterogeneity across clients
        "fedprox_alpha": (0.0, Interval(float, 0, None)),
        "fedprox_beta": (0.0, Interval(float, 0, None)),
        "fedprox_iid": (False, Flag()),  # one shared model and mean-zero inputs (the paper's Synthetic-IID)
    }

    @classmethod
    def partition_table(cls, options) -> Table:
        """Client k's generated rows make client k (--clients, 30 by default); the test rows are every client's
        last 10%, as a job of these settings holds them."""
        alpha, beta, iid, seed = options.fedprox_alpha, options.fedprox_beta, options.fedprox_iid, options.seed
        if alpha < 0 or beta < 0:
            raise DataError("--fedprox-alpha and --fedprox-beta are standard deviations and must be >= 0.")
        k = options.clients or FEDPROX_DEFAULT_CLIENTS
        if k < 1:
            raise DataError(f"--clients must be a positive int. Got {k}.")
        blocks = [fedprox_synthetic_client(seed, c, alpha, beta, iid) for c in range(k)]
        starts = np.cumsum([0, *(y.size for _, y in blocks)])
        test = np.concatenate([np.arange(s + fedprox_split(y.size), s + y.size) for s, (_, y) in zip(starts, blocks)])
        groups = np.repeat(np.arange(k, dtype=np.float64), [y.size for _, y in blocks])
        return Table(np.concatenate([X for X, _ in blocks]), np.concatenate([y for _, y in blocks]), groups, test,
                     FEDPROX_CLASSES, {"alpha": alpha, "beta": beta, "iid": iid})

    def shape(self) -> DataShape:
        return DataShape(FEDPROX_FEATURES, FEDPROX_CLASSES, "classification")

    def n_clients(self, ranks: int) -> int:
        return self.cfg.data.clients or FEDPROX_DEFAULT_CLIENTS

    def _client(self, k: int) -> tuple[Shard, Shard]:
        cfg = self.cfg
        X, y = fedprox_synthetic_client(cfg.seed, k, cfg.data.fedprox_alpha, cfg.data.fedprox_beta,
                                        cfg.data.fedprox_iid)
        cut = fedprox_split(y.size)
        return (self._shard(X, y, np.arange(cut), f"client {k}"),
                self._shard(X, y, np.arange(cut, y.size), f"the test rows of client {k}"))

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        return [ClientData(*self._client(k)) for k in ids]

    def client_rows(self, n_clients: int) -> list[int]:
        return [fedprox_split(fedprox_client_rows(self.cfg.seed, k)) for k in range(n_clients)]

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

"""Data from files: a partition directory (python -m mpifl partition) or one .npy table (distributed mode).

Each rank maps only its own clients' files (the server only the test files),
so the audit (mpifl.audit) can show that no rank opens another rank's data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mpifl.data import files
from mpifl.data.partition import _bounds
from mpifl.data.shards import ClientData, DataShape, DataSource, Shard, check_fit, hosted
from mpifl.errors import DataError
from mpifl.kernels.checks import all_finite
from mpifl.models import output_link

if TYPE_CHECKING:
    from mpifl.config.sections import Config


class PartitionFiles(DataSource):
    """A partition directory: per-client files and a manifest; ranks map only their own files, each when its
    client is first used where the rank's clients outgrow data.cache_mib."""

    builds_clients_alone = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.path = cfg.data.path

    def shape(self) -> DataShape:
        m = files.manifest_of(self.path)
        return DataShape(m.n_features, m.n_classes, m.doc["task"], m.sparse)

    def n_clients(self, ranks: int) -> int:
        return files.manifest_of(self.path).n_clients

    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        parts = files.client_parts(self.path, ids, self.dtype, self.cfg.data.verify)
        tests = files.client_test_parts(self.path, ids, self.dtype, self.cfg.data.verify)
        held = files.client_validation_parts(self.path, ids, self.dtype, self.cfg.data.verify)
        return [ClientData(Shard(X, y), None if test is None else Shard(*test), None if val is None else Shard(*val))
                for (X, y), test, val in zip(parts, tests, held)]

    def client_rows(self, n_clients: int) -> list[int]:
        return [int(c["rows"]) for c in files.manifest_of(self.path).doc["clients"]]

    def own_validation(self) -> bool:
        return any("validation" in c for c in files.manifest_of(self.path).doc["clients"])

    def server_test(self) -> Shard:
        return Shard(*files.test_part(self.path, self.dtype, self.cfg.data.verify))

    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        manifest = files.manifest_of(self.path)
        check_fit(manifest.n_clients, n_workers, "worker")
        mine = hosted(manifest.n_clients, n_workers, worker)
        train = Shard(*files.concat(files.client_parts(self.path, mine, self.dtype, self.cfg.data.verify)))
        share = _bounds(int(manifest.doc["test"]["rows"]), n_workers)[worker]
        return train, Shard(*files.test_part(self.path, self.dtype, self.cfg.data.verify, share))

    def worker_places(self, worker: int, n_workers: int) -> np.ndarray:
        rows = [int(c["rows"]) for c in files.manifest_of(self.path).doc["clients"]]
        mine = hosted(len(rows), n_workers, worker)
        start = sum(rows[: mine.start])
        return np.arange(start, start + sum(rows[mine.start : mine.stop]))

    def train_rows(self, ranks: int, workers: int) -> int:
        return sum(int(c["rows"]) for c in files.manifest_of(self.path).doc["clients"])


class NpyTable(DataSource):
    """One .npy file of features and a label column: each distributed worker reads its own rows."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.path = cfg.data.path

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
        task = "regression" if output_link(self.cfg) == "linear" else "classification"
        return DataShape(shape[1] - 1, self.cfg.data.n_classes, task)

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
        (Xt, yt), (Xs, ys), _ = files.npy_rows(self.path, self.cfg.data.label_column, self.cfg.data.test_fraction,
                                              worker, n_workers, self.dtype)
        name = f"rows of worker {worker} in {self.path}"
        return self._checked(Shard(Xt, yt), name), self._checked(Shard(Xs, ys), name)

    def worker_places(self, worker: int, n_workers: int) -> np.ndarray:
        n = self._table_shape()[0]
        lo, hi = _bounds(n - int(round(n * self.cfg.data.test_fraction)), n_workers)[worker]
        return np.arange(lo, hi)

    def train_rows(self, ranks: int, workers: int) -> int:
        n = self._table_shape()[0]
        return n - round(n * self.cfg.data.test_fraction)

    def _checked(self, shard: Shard, name: str) -> Shard:
        if not (all_finite(shard.X.reshape(-1)) and all_finite(shard.y)):
            raise DataError(f"The {name} contain NaN or inf values.")
        if output_link(self.cfg) != "linear":
            y = shard.y
            bad = (y != np.floor(y)) | (y < 0) | (y >= self.cfg.data.n_classes)
            if bad.any():
                raise DataError(f"The {name} include label {y[bad][0]:g}, outside 0..{self.cfg.data.n_classes - 1} "
                                "(data.n_classes).")
        return shard

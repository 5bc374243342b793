"""What each rank trains or evaluates on: the job's data source, resolved once from the config.

A DataSource says what a job's data is and hands each rank its share;
mpifl.data.catalog's ``resolve(cfg)`` picks the job's source (data.path's
files, or data.name's entry in the registry of data sources).

No data is ever sent between ranks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mpifl.constraints import Constraint
from mpifl.data import files
from mpifl.data.partition import _bounds
from mpifl.data.sparse import CSR
from mpifl.errors import DataError, RankCountError
from mpifl.model import ModelSpec
from mpifl.models import MODELS, output_link, output_link_key

if TYPE_CHECKING:
    from mpifl.config.sections import Config


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
    """One federated client's rows: what it trains on, its own test rows where the source has them, and its
    validation rows (mpifl.data.validation)."""

    train: Shard
    test: Shard | None = None
    validation: Shard | None = None


def with_client_tests(clients: list[ClientData], ids, fraction: float, seed: int) -> list[ClientData]:
    """Hold out ``fraction`` of each client's rows as its own test rows (data.client_test_fraction), for sources
    without a split of their own: a seeded shuffle per (seed, client), so a client's split does not depend on
    the rank that hosts it.  A client keeps at least one training row; one with its own split keeps it."""
    from mpifl.rng import Purpose

    return hold_out(clients, ids, fraction, seed, Purpose.SPLIT, "test")


def hold_out(clients: list[ClientData], ids, fraction: float, seed: int, purpose, part: str) -> list[ClientData]:
    """Each client with ``fraction`` of its training rows moved to its ``part`` ("test" or "validation"), by a
    seeded shuffle per (seed, purpose, client); a client that already has that part keeps it."""
    if fraction <= 0:
        return clients
    out = []
    for data, k in zip(clients, ids):
        split = held_out_rows(data.train.n, fraction, seed, purpose, int(k))
        if getattr(data, part) is not None or split is None:
            out.append(data)
            continue
        kept, held = split
        out.append(replace(data, train=take(data.train, kept), **{part: take(data.train, held)}))
    return out


def held_out_rows(n: int, fraction: float, seed: int, purpose, client: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(kept, held) sorted row indices of a client's n rows: round(fraction n) of them held out by a seeded shuffle
    per (seed, purpose, client), at least one row kept; None when no row would be held."""
    from mpifl.rng import stream

    count = min(int(round(fraction * n)), n - 1)
    if count < 1:
        return None
    order = stream(seed, purpose, 1 + client).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])


def take(shard: Shard, rows: np.ndarray) -> Shard:
    X = shard.X.take(rows) if isinstance(shard.X, CSR) else np.ascontiguousarray(shard.X[rows])
    return Shard(X, np.ascontiguousarray(shard.y[rows]))


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
    """Where a job's rows come from; every method returns only the caller's own share.

    A registered source (mpifl.data.catalog) declares its ``name``, the
    ``data.<key>`` ``parameters`` it alone uses, and in ``check`` which output
    links its task allows; ``open`` may return a variant of it for the config.
    """

    name: ClassVar[str] = ""
    parameters: ClassVar[dict[str, tuple[Any, Constraint]]] = {}
    # The data.<key> that sets how many rows the source makes, so that a weak-scaling study can grow it with the
    # workers; empty: the source's size is fixed (a file, the digits).
    size_key: ClassVar[str] = ""
    # True: clients(range(k, k + 1)) makes client k's rows alone, as a pure function of (seed, client), so a rank
    # builds a client when it first trains or evaluates (mpifl.data.client_pool); False: one table is cut into
    # clients, and a rank builds its clients together at set-up.
    builds_clients_alone: ClassVar[bool] = False

    @classmethod
    def check(cls, cfg, link: str, key: str, origin) -> None:
        """Refuse an output link this source's task cannot train (before any data is read)."""

    @classmethod
    def open(cls, cfg: Config) -> DataSource:
        return cls(cfg)

    @classmethod
    def partition_table(cls, options):
        """The whole table that ``python -m mpifl partition NAME`` cuts (a mpifl.data.sources.Table), from the
        command's parsed options (``options.seed``, ``options.n_samples``, ...); None: it makes no table to cut."""
        return None

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.dtype = np.dtype(cfg.model.dtype)

    @abstractmethod
    def shape(self) -> DataShape:
        """Features, classes and task, from the source's metadata (no rows are read)."""

    def n_clients(self, ranks: int) -> int:
        """K, the number of federated clients: data.clients, or one per client rank."""
        return self.cfg.data.clients or ranks - 1

    @abstractmethod
    def clients(self, ids: range, n_clients: int) -> list[ClientData]:
        """The rows of federated clients ``ids`` (0-based) out of ``n_clients``."""

    @abstractmethod
    def client_rows(self, n_clients: int) -> Sequence[int]:
        """Every client's number of training rows (to balance client ranks), without loading the rows; an array
        where the source can say them at once (a population of millions is not a Python loop)."""

    @abstractmethod
    def server_test(self) -> Shard:
        """The test rows the federated server holds."""

    @abstractmethod
    def worker(self, worker: int, n_workers: int) -> tuple[Shard, Shard]:
        """(train, test) rows of distributed worker ``worker``."""

    def own_validation(self) -> bool:
        """Whether the source's clients bring validation rows of their own (a partition's validation/ files)."""
        return False

    def worker_places(self, worker: int, n_workers: int) -> np.ndarray | None:
        """The places of worker's training rows among the job's training rows, the same whatever the worker
        count (distributed validation folds are cut by place, mpifl.data.validation); None: the source cannot
        say, and the places follow the workers' order."""
        return None

    @abstractmethod
    def train_rows(self, ranks: int, workers: int) -> int:
        """Training rows of the whole job (for traffic models), without reading rows where possible."""

    def _whole(self, X: np.ndarray, y: np.ndarray, name: str) -> Shard:
        """Every row of a table made for one part (a client's generated rows): no row selection to copy."""
        shard = Shard(np.ascontiguousarray(X, dtype=self.dtype), np.ascontiguousarray(y, dtype=self.dtype))
        if not (np.isfinite(shard.X).all() and np.isfinite(shard.y).all()):
            raise DataError(f"The data of {name} contains NaN or inf values.")
        return shard

    def _shard(self, X: np.ndarray, y: np.ndarray, rows: np.ndarray, name: str) -> Shard:
        shard = Shard(np.ascontiguousarray(X[rows], dtype=self.dtype), np.ascontiguousarray(y[rows], dtype=self.dtype))
        if not (np.isfinite(shard.X).all() and np.isfinite(shard.y).all()):
            raise DataError(f"The data of {name} contains NaN or inf values.")
        return shard


def spec_for(cfg: Config, source: DataSource) -> ModelSpec:
    """The model the config asks for, sized to its data source (a partition's manifest, say)."""
    shape = source.shape()
    _check_task(cfg, shape)
    n_classes = 1 if output_link(cfg) == "linear" else shape.n_classes
    kind = MODELS[cfg.model.kind]
    spec = ModelSpec(kind, shape.n_features, n_classes, np.dtype(cfg.model.dtype), shape.sparse,
                     **kind.spec_fields(cfg))
    spec.shape  # lays the parameters out now, so that a network that cannot take this data fails here
    return spec


def _check_task(cfg: Config, shape: DataShape) -> None:
    where = cfg.data.path or f"data.name {cfg.data.name!r}"
    kind = output_link(cfg)
    key = output_link_key(cfg)
    if shape.task == "regression" and kind != "linear":
        raise DataError(f"{where} holds a regression task; use {key} = \"linear\".")
    if shape.task == "classification" and kind == "linear":
        raise DataError(f"{where} holds {shape.n_classes} classes; use {key} = \"softmax\" or \"logistic\".")
    if kind == "logistic" and shape.n_classes != 2:
        raise DataError(f"{where} holds {shape.n_classes} classes; {key} 'logistic' needs 2. Use \"softmax\".")

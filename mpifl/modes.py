"""The two modes a job runs in, each one object: what a run of it checks, loads, builds, compiles, trains and reports.

mpifl.runner sets a run up in one pass down these steps, asking the job's
mode (``MODES[cfg.mode]``) at each; no other module asks which mode a job
is in, apart from the config's checks of the keys that apply to one mode.

- ``Federated``: rank 0 is the server, ranks 1..p-1 host the clients.  With
  mpifl.federated (the rounds) and mpifl.roles (the root rank, the node's
  first rank), the only module that branches on a rank's role.
- ``Distributed``: every rank is a worker on its own shard.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from mpi4py import MPI

from mpifl import federated, federated_clients
from mpifl.client_speeds import profiles
from mpifl.config import Config
from mpifl.data import validation
from mpifl.data.client_pool import ClientPool
from mpifl.data.shards import DataSource, Shard, balanced_blocks, check_fit, with_client_tests
from mpifl.distributed import train_distributed
from mpifl.errors import ConfigError, Diverged, RankCountError
from mpifl.kernel_plan import KernelPlan
from mpifl.local import LocalSettings, keeps_optimizer_state
from mpifl.loop import Loop
from mpifl.models import MODELS
from mpifl.model import ModelSpec
from mpifl.ranks import is_root
from mpifl.stages import Chain, build_chain
from mpifl.stages.compress import CompressStage
from mpifl.stages.compress import summary as compression_summary
from mpifl.stopping import divergence
from mpifl.strategies import STRATEGIES, Setup, Strategy, strategy_params
from mpifl.strategies.aggregators import AGGREGATORS, Aggregator
from mpifl.strategies.sampling import cohort_size, round_plan


class Mode(ABC):
    """One mode's part in every step of a run, for the validated job ``cfg``."""

    name: ClassVar[str] = ""
    min_ranks: ClassVar[int] = 1

    def __init__(self, cfg: Config):
        self.cfg = cfg

    @staticmethod
    @abstractmethod
    def trainers(ranks: int) -> int:
        """Ranks that hold training data, of ``ranks``."""

    @abstractmethod
    def too_few_ranks(self, ranks: int) -> str:
        """Why a job of this mode cannot run on ``ranks`` (< min_ranks) ranks, and what to do."""

    def check_ranks(self, comm: MPI.Comm) -> None:
        if comm.Get_size() < self.min_ranks:
            raise RankCountError(self.too_few_ranks(comm.Get_size()))

    @abstractmethod
    def training_kernel(self) -> tuple[str, int]:
        """(the kernel entry point local training calls, how many passes over the rows the job makes)."""

    def kernel_plan(self, threads: int) -> KernelPlan:
        """The kernels this job calls: its training entry point, and evaluation (every job evaluates)."""
        train, passes = self.training_kernel()
        return KernelPlan(frozenset({train, "evaluate"}), threads, passes)

    def rows_per_trainer(self, comm: MPI.Comm, source: DataSource) -> int:
        """The job's training rows over the ranks that train, without reading them."""
        trainers = self.trainers(comm.Get_size())
        return -(-source.train_rows(comm.Get_size(), trainers) // max(trainers, 1))

    @abstractmethod
    def validation_units(self, source: DataSource, ranks: int) -> tuple[int, str]:
        """(how many of what data.folds deals into folds, its name): clients, or training rows."""

    @abstractmethod
    def load(self, comm: MPI.Comm, source: DataSource) -> tuple:
        """This rank's data (and what it needs to know of the others'), never another rank's rows."""

    def chain(self, comm: MPI.Comm, spec: ModelSpec, source: DataSource, data: tuple) -> Chain:
        """The stages an update passes through (mpifl.stages), built on every rank together."""
        return Chain([])

    @abstractmethod
    def tree_rows(self, comm: MPI.Comm, source: DataSource) -> TreeRows:
        """This rank's rows for a tree model's job (mpifl.trees.job), never another rank's."""

    def prepared(self, comm: MPI.Comm, chain: Chain, data: tuple, source: DataSource) -> tuple:
        """This rank's data as the chain changes it."""
        return data

    @abstractmethod
    def train(self, loop: Loop, data: tuple) -> np.ndarray:
        """Run this rank's part of the job; every rank returns the final parameters."""

    @abstractmethod
    def describe(self, ranks: int) -> str:
        """The banner's words for who does what, and the algorithm."""

    def summary(self, chain: Chain, records: list) -> dict[str, Any]:
        """This mode's entries of summary.json."""
        return {}


class Federated(Mode):
    name = "federated"
    min_ranks = 2

    @staticmethod
    def trainers(ranks: int) -> int:
        return ranks - 1

    def too_few_ranks(self, ranks: int) -> str:
        return ("Federated mode needs at least 2 ranks (rank 0 serves, the others are clients); "
                f"this job has {ranks}. Start more ranks, e.g. 'mpiexec -n 8 python -m mpifl', or train on one "
                "rank in distributed mode: 'python -m mpifl run JOB.toml --set mode=distributed'.")

    def training_kernel(self) -> tuple[str, int]:
        return "sgd_epoch", self.cfg.rounds * max(self.cfg.train.epochs, 1)

    def kernel_plan(self, threads: int) -> KernelPlan:
        """Where the clients train as cohorts (mpifl.cohort), the cohort kernel instead of the SGD epoch, which
        only fine-tuning then calls."""
        plan = super().kernel_plan(threads)
        if not self.trains_cohorts():
            return plan
        operations = plan.operations | {"cohort_sgd"}
        return KernelPlan(operations if self.cfg.train.finetune_epochs else operations - {"sgd_epoch"}, plan.threads,
                          plan.passes)

    def trains_cohorts(self) -> bool:
        """What mpifl.cohort.trains_as_cohort will say on the client ranks, read from the job."""
        cfg, settings = self.cfg, LocalSettings.from_config(self.cfg)
        return (STRATEGIES[cfg.server.strategy].client.trains_plainly() and cfg.server.hierarchy == "none"
                and not keeps_optimizer_state(settings) and settings.optimizer == "sgd"
                and MODELS[cfg.model.kind].kernels().trains_cohorts)

    def validation_units(self, source: DataSource, ranks: int) -> tuple[int, str]:
        return source.n_clients(ranks), "clients"  # leave-clients-out

    def load(self, comm: MPI.Comm, source: DataSource) -> tuple:
        """The server: its test split, who hosts whom and the clients' row counts (from metadata); a client
        rank: its clients' data, the clients it hosts, and who hosts whom."""
        cfg, size = self.cfg, comm.Get_size()
        n_clients = source.n_clients(size)
        check_fit(n_clients, size - 1, "client")
        validation.check(cfg.data.folds, cfg.data.fold, cfg.data.validation_fraction,
                         *self.validation_units(source, size))
        if cfg.data.folds and (STRATEGIES[cfg.server.strategy].asynchronous or cfg.server.hierarchy != "none"):
            raise ConfigError("data.folds holds a fold of clients out of training; asynchronous and two-level "
                              "rounds plan their clients themselves. Use data.validation_fraction.")
        problem = STRATEGIES[cfg.server.strategy].check(strategy_params(cfg), n_clients)
        if problem:
            raise ConfigError(f"server.strategy {cfg.server.strategy!r}: {problem}")
        problem = aggregator(cfg).problem(updates_per_round(cfg, n_clients))
        if problem:
            raise ConfigError(f"server.aggregator: {problem}")
        rows = np.asarray(source.client_rows(n_clients), dtype=np.int64)
        blocks = balanced_blocks(rows, size - 1)
        # whether a recorded round samples clients to evaluate on validation rows (none: no such draw, no cost)
        validating = bool(cfg.data.validation_fraction or cfg.data.folds or source.own_validation())
        if comm.Get_rank() == federated.SERVER:
            return (source.server_test(), blocks, rows, validating)
        clients = blocks[comm.Get_rank() - 1]

        def build(ids: range) -> list:
            data = with_client_tests(source.clients(ids, n_clients), ids, cfg.data.client_test_fraction, cfg.seed)
            return validation.federated_split(data, ids, n_clients, cfg.seed, cfg.data.validation_fraction,
                                              cfg.data.folds, cfg.data.fold)

        budget = cfg.data.cache_mib * 2**20
        hosted_bytes = int(rows[clients.start : clients.stop].sum()) * (source.shape().n_features + 1) \
            * np.dtype(cfg.model.dtype).itemsize
        lazy = source.builds_clients_alone and hosted_bytes > budget  # else built now: errors fail every rank now
        return (ClientPool(build, clients, lazy, budget), clients, blocks, validating)

    def tree_rows(self, comm: MPI.Comm, source: DataSource) -> TreeRows:
        """The server: no training rows, the test set.  A client rank: its clients' training rows, one after
        another, each keyed by (client, row) so that a row's draws do not depend on the rank that hosts it; the
        trees of round r see the clients that round r's plan samples (server.fraction)."""
        cfg, size = self.cfg, comm.Get_size()
        n_clients = source.n_clients(size)
        check_fit(n_clients, size - 1, "client")
        validation.check(cfg.data.folds, cfg.data.fold, cfg.data.validation_fraction, n_clients, "clients")
        if cfg.data.validation_fraction:
            raise ConfigError("A federated tree job validates on held-out clients: set data.folds (leave-clients-"
                              "out), not data.validation_fraction.")
        rows = np.asarray(source.client_rows(n_clients), dtype=np.int64)
        blocks = balanced_blocks(rows, size - 1)
        if comm.Get_rank() == federated.SERVER:
            shape = source.shape()
            empty = np.empty((0, shape.n_features), dtype=np.dtype(cfg.model.dtype))
            return TreeRows(empty, np.empty(0, dtype=empty.dtype), np.empty(0, dtype=np.int64), source.server_test(),
                            np.empty(0, dtype=np.int64), n_clients)
        clients = blocks[comm.Get_rank() - 1]
        shards = [data.train for data in source.clients(clients, n_clients)]
        owner = np.repeat(np.arange(clients.start, clients.stop), [s.n for s in shards])
        places = (owner << 32) + np.concatenate([np.arange(s.n) for s in shards])
        empty_test = Shard(np.empty((0, shards[0].X.shape[1]), dtype=shards[0].X.dtype),
                           np.empty(0, dtype=shards[0].y.dtype))
        X, y = np.concatenate([s.X for s in shards]), np.concatenate([s.y for s in shards])
        held = validation.held_out_clients(cfg.seed, n_clients, cfg.data.folds, cfg.data.fold)
        if held is None:
            return TreeRows(X, y, places, empty_test, owner, n_clients)
        out = held[owner]  # the held-out fold's clients validate and never train
        return TreeRows(X[~out], y[~out], places[~out], empty_test, owner[~out], n_clients, Shard(X[out], y[out]))

    def sampled_clients(self, rnd: int, n_clients: int) -> np.ndarray:
        """Which clients the trees of boosting round ``rnd`` (from 0) see: round rnd + 1's plan."""
        cfg = self.cfg
        return round_plan(cfg.seed, rnd + 1, n_clients, cfg.server.fraction, 1, 0.0, False,
                          cfg.server.sampling == "poisson") > 0

    def chain(self, comm: MPI.Comm, spec: ModelSpec, source: DataSource, data: tuple) -> Chain:
        n_clients = source.n_clients(comm.Get_size())
        server = comm.Get_rank() == federated.SERVER
        return build_chain(comm, self.cfg, spec, n_clients, STRATEGIES[self.cfg.server.strategy],
                           0 if server else len(data[1]), is_root(comm))

    def prepared(self, comm: MPI.Comm, chain: Chain, data: tuple, source: DataSource) -> tuple:
        """A client rank's data as the chain changes it (label flipping, on the malicious clients' own rank)."""
        if comm.Get_rank() == federated.SERVER:
            return data
        n_classes = source.shape().n_classes
        return (data[0].then(lambda part, ids: chain.prepare_data(part, ids, n_classes)), *data[1:])

    def train(self, loop: Loop, data: tuple) -> np.ndarray:
        comm, cfg, spec = loop.comm, loop.cfg, loop.kernels.spec
        verdict = np.zeros(1)  # whether the last round, which no later downlink reports on, diverged
        if comm.Get_rank() == federated.SERVER:
            test, blocks, rows, validating = data
            strategy = make_strategy(cfg, spec, blocks[-1].stop, loop.chain, rows)
            server = federated.ServerRounds(loop, test, blocks, validating, strategy, loop.chain)
            theta = server.run()
            verdict[0] = divergence(theta, server.watched)
        else:
            federated_clients.ClientRounds(loop, *data, STRATEGIES[cfg.server.strategy], loop.chain).run()
            theta = spec.zeros()
        comm.Bcast(theta, root=federated.SERVER)
        comm.Bcast(verdict, root=federated.SERVER)
        if verdict[0]:
            raise Diverged(cfg.rounds, int(verdict[0]), cfg.train.lr)
        return theta

    def describe(self, ranks: int) -> str:
        return f"1 server + {ranks - 1} clients, {self.cfg.server.strategy}, fraction {self.cfg.server.fraction}"

    def summary(self, chain: Chain, records: list) -> dict[str, Any]:
        last = records[-1]
        return {"strategy": self.cfg.server.strategy, "aggregator": self.cfg.server.aggregator,
                **chain.summary(records),
                "final_mean_client_accuracy": last.mean_client_accuracy,
                "final_mean_personal_accuracy": last.personal["mean"] if last.personal else None,
                "final_p10_personal_accuracy": last.personal["p10"] if last.personal else None}


class Distributed(Mode):
    name = "distributed"

    @staticmethod
    def trainers(ranks: int) -> int:
        return ranks

    def too_few_ranks(self, ranks: int) -> str:
        return f"Distributed mode needs at least one rank; this job has {ranks}."

    def training_kernel(self) -> tuple[str, int]:
        cfg = self.cfg
        rounds, epochs = cfg.rounds, max(cfg.train.epochs, 1)
        if cfg.train.optimizer == "lbfgs":
            return "full_gradient", rounds * 2  # about two evaluations per iteration with the line search
        if cfg.train.algorithm == "local_sgd":
            return "sgd_epoch", rounds * epochs
        if cfg.train.batch_size == 0:
            return "full_gradient", rounds * epochs
        return "batch_gradient", rounds * epochs

    def validation_units(self, source: DataSource, ranks: int) -> tuple[int, str]:
        return source.train_rows(ranks, ranks), "training rows"

    def load(self, comm: MPI.Comm, source: DataSource) -> tuple:
        """(train, test, the training rows' places or None): validation rows are cut in prepared()."""
        cfg, size, rank = self.cfg, comm.Get_size(), comm.Get_rank()
        validation.check(cfg.data.folds, cfg.data.fold, cfg.data.validation_fraction,
                         *self.validation_units(source, size))
        train, test = source.worker(rank, size)
        return train, test, source.worker_places(rank, size) if cfg.data.folds or cfg.data.validation_fraction else None

    def prepared(self, comm: MPI.Comm, chain: Chain, data: tuple, source: DataSource) -> tuple:
        """(train, test, validation or None): the worker's validation rows, by their places (mpifl.data.validation)."""
        train, test, places = data
        cfg = self.cfg
        if not (cfg.data.folds or cfg.data.validation_fraction):
            return train, test, None
        n = comm.allreduce(train.n)  # once, at set-up
        if places is None:  # the source cannot say: the workers' rows in rank order
            start = comm.exscan(train.n) or 0
            places = np.arange(start, start + train.n)
        train, held = validation.distributed_split(train, places, n, cfg.seed, cfg.data.validation_fraction,
                                                   cfg.data.folds, cfg.data.fold)
        return train, test, held

    def train(self, loop: Loop, data: tuple) -> np.ndarray:
        return train_distributed(loop, *data)

    def tree_rows(self, comm: MPI.Comm, source: DataSource) -> TreeRows:
        """The worker's training and test rows; a row's place is its place among the job's rows."""
        cfg, size = self.cfg, comm.Get_size()
        validation.check(cfg.data.folds, cfg.data.fold, cfg.data.validation_fraction,
                         *self.validation_units(source, size))
        train, test = source.worker(comm.Get_rank(), size)
        places = source.worker_places(comm.Get_rank(), size)
        if places is None:  # the rows follow the workers' order
            first = comm.exscan(train.n) or 0
            places = np.arange(first, first + train.n)
        places = np.asarray(places, dtype=np.int64)
        held = None
        if cfg.data.folds or cfg.data.validation_fraction:
            index = np.arange(train.n)  # split as the round loop splits rows; this gives the indices of each side
            kept, out = (side.X for side in validation.distributed_split(
                Shard(index, index), places, comm.allreduce(train.n), cfg.seed, cfg.data.validation_fraction,
                cfg.data.folds, cfg.data.fold))
            train, places, held = Shard(train.X[kept], train.y[kept]), places[kept], Shard(train.X[out], train.y[out])
        return TreeRows(train.X, train.y, places, test, None, 0, held)

    def describe(self, ranks: int) -> str:
        return f"{ranks} workers, {self.cfg.train.algorithm}"

    def summary(self, chain: Chain, records: list) -> dict[str, Any]:
        """Distributed mode compresses its own sums (mpifl.compressed_sum), reported as the stage reports them."""
        return {CompressStage.summary_key: compression_summary(self.cfg, records[-1])}


MODES: dict[str, type[Mode]] = {cls.name: cls for cls in (Federated, Distributed)}


@dataclass(frozen=True)
class TreeRows:
    """A rank's part of a tree model's job: its training rows and their places, its test rows, and in federated
    mode each row's client (None: every row takes part in every tree)."""

    X: np.ndarray
    y: np.ndarray
    places: np.ndarray
    test: Shard
    owner: np.ndarray | None
    n_clients: int
    val: Shard | None = None  # this rank's validation rows (data.validation_fraction or data.folds)


def mode_of(cfg: Config) -> Mode:
    """The job's mode, as one object."""
    return MODES[cfg.mode](cfg)


def make_strategy(cfg: Config, spec: ModelSpec, n_clients: int, chain: Chain | None = None,
                  client_rows=None) -> Strategy:
    """The server half of the configured algorithm; a stage may replace its combined delta (privacy's release)."""
    cls = STRATEGIES[cfg.server.strategy]
    rows = client_rows if client_rows is not None else [0] * n_clients
    return cls(Setup(
        params=strategy_params(cfg), n_clients=n_clients, seed=cfg.seed, fraction=cfg.server.fraction,
        epochs=cfg.train.epochs, stragglers=cfg.train.stragglers, drop_stragglers=cfg.server.drop_stragglers,
        local_lr=cfg.train.lr, local_momentum=cfg.train.momentum, shape=spec.shape, dtype=spec.dtype,
        aggregator=aggregator(cfg), sampling=cfg.server.sampling,
        release=chain.release() if chain is not None else None,
        profiles=profiles(cfg, rows, spec.size * spec.dtype.itemsize), rounds=cfg.rounds,
        held_out=validation.held_out_clients(cfg.seed, n_clients, cfg.data.folds, cfg.data.fold),
    ))


def aggregator(cfg: Config) -> Aggregator:
    """server.aggregator with its declared parameters, from a validated config."""
    cls = AGGREGATORS[cfg.server.aggregator]
    return cls(cfg.server.pick(cls.parameters))


def updates_per_round(cfg: Config, n_clients: int) -> int:
    """Updates the server combines in a round: the sampled clients, less the stragglers if they are dropped."""
    sampled = cohort_size(cfg.server.fraction, n_clients)
    if cfg.server.drop_stragglers:
        sampled -= int(round(cfg.train.stragglers * sampled))
    return sampled

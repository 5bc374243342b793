"""Who does what: the one module that branches on rank.

Federated mode: rank 0 serves and ranks 1..p-1 are clients.  In every mode,
rank 0 alone writes the run directory and prints, and the first rank of each
node compiles the kernels before the others load them from the cache.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpifl import federated, federated_clients, tuning
from mpifl.compile import warm_up
from mpifl.config import Config
from mpifl.data.shards import DataSource, balanced_blocks, check_fit, with_client_tests
from mpifl.distributed import train_distributed
from mpifl.errors import ConfigError, Diverged, RankCountError
from mpifl.kernel_plan import KernelPlan
from mpifl.kernels.variants import Selection, tuning_mode
from mpifl.loop import Loop
from mpifl.metrics import RunWriter
from mpifl.model import ModelSpec
from mpifl.stages import Chain
from mpifl.stages import build_chain as build_stages
from mpifl.stopping import divergence
from mpifl.strategies import STRATEGIES, Setup, Strategy, strategy_params
from mpifl.strategies.aggregators import AGGREGATORS, Aggregator
from mpifl.strategies.sampling import cohort_size

from mpifl.ranks import ROOT, is_root  # noqa: F401 - the root rank, for the modules that ask roles


def check_rank_count(comm: MPI.Comm, cfg: Config) -> None:
    expected = os.environ.get("MPIFL_EXPECT_RANKS", "")
    if expected.isdigit() and int(expected) != comm.Get_size():
        raise RankCountError(
            f"This process is rank {comm.Get_rank()} of {comm.Get_size()}, but {expected} tasks were started "
            "(MPIFL_EXPECT_RANKS). If every task says 'rank 0 of 1', they came up as singletons: the "
            "launcher and the MPI library disagree (with the mpich wheel use 'srun --mpi=pmi2' or mpiexec)."
        )
    if cfg.mode == "federated" and comm.Get_size() < 2:
        raise RankCountError(
            "Federated mode needs at least 2 ranks (rank 0 serves, the others are clients); "
            f"this job has {comm.Get_size()}. Start more ranks, e.g. "
            "'mpiexec -n 8 python -m mpifl', or train on one rank in distributed mode: "
            "'python -m mpifl run JOB.toml --set mode=distributed'."
        )


def load_data(comm: MPI.Comm, cfg: Config, source: DataSource) -> tuple:
    """This rank's data: the test split on the server, its clients' data or a worker's shard elsewhere."""
    rank, size = comm.Get_rank(), comm.Get_size()
    if cfg.mode == "distributed":
        return source.worker(rank, size)
    n_clients = source.n_clients(size)
    check_fit(n_clients, size - 1, "client")
    problem = STRATEGIES[cfg.server.strategy].check(strategy_params(cfg), n_clients)
    if problem:
        raise ConfigError(f"server.strategy {cfg.server.strategy!r}: {problem}")
    problem = aggregator(cfg).problem(updates_per_round(cfg, n_clients))
    if problem:
        raise ConfigError(f"server.aggregator: {problem}")
    blocks = balanced_blocks(source.client_rows(n_clients), size - 1)
    if rank == federated.SERVER:
        return (source.server_test(), blocks, source.client_rows(n_clients))
    clients = blocks[rank - 1]
    data = with_client_tests(source.clients(clients, n_clients), clients, cfg.data.client_test_fraction, cfg.seed)
    return (data, clients, blocks)


def build_chain(comm: MPI.Comm, cfg: Config, spec: ModelSpec, source: DataSource, data: tuple) -> Chain:
    """This rank's stage chain (empty in distributed mode), built on every rank together."""
    n_clients = source.n_clients(comm.Get_size()) if cfg.mode == "federated" else 0
    hosted = len(data[1]) if cfg.mode == "federated" and not is_root(comm) else 0
    return build_stages(comm, cfg, spec, n_clients, STRATEGIES[cfg.server.strategy], hosted, is_root(comm))


def prepared(comm: MPI.Comm, chain: Chain, data: tuple, source: DataSource) -> tuple:
    """A client rank's data as the chain changes it (label flipping, on the malicious clients' own rank)."""
    if is_root(comm) or len(data) != 3:
        return data
    clients, blocks = data[1], data[2]
    return (chain.prepare_data(data[0], clients, source.shape().n_classes), clients, blocks)


def make_strategy(cfg: Config, spec: ModelSpec, n_clients: int, chain: Chain | None = None,
                  client_rows=None) -> Strategy:
    """The server half of the configured algorithm; a stage may replace its combined delta (privacy's release)."""
    from mpifl.client_speeds import profiles

    cls = STRATEGIES[cfg.server.strategy]
    rows = client_rows if client_rows is not None else [0] * n_clients
    return cls(Setup(
        params=strategy_params(cfg), n_clients=n_clients, seed=cfg.seed, fraction=cfg.server.fraction,
        epochs=cfg.train.epochs, stragglers=cfg.train.stragglers, drop_stragglers=cfg.server.drop_stragglers,
        local_lr=cfg.train.lr, local_momentum=cfg.train.momentum, shape=spec.shape, dtype=spec.dtype,
        aggregator=aggregator(cfg), sampling=cfg.server.sampling,
        release=chain.release() if chain is not None else None,
        profiles=profiles(cfg, rows, spec.size * spec.dtype.itemsize), rounds=cfg.rounds,
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


@dataclass(frozen=True)
class KernelSetup:
    """What the node's first rank settled before training: compiled kernels and their variants."""

    compile_seconds: float  # this rank's compiles or cache loads
    selection: Selection  # the node's variants, the same on every rank of the node
    choice_seconds: float = 0.0  # timing the variants on the node's first rank; 0 when cached, pinned or skipped


def compile_in_node_order(comm: MPI.Comm, spec: ModelSpec, plan: KernelPlan, batch_size: int,
                          rows: int) -> KernelSetup:
    """Settle the variants and compile the planned kernels on each node's first rank; the other ranks
    then take its variants and load the kernels from the cache.

    The variants are the pinned or cached ones; else, as MPIFL_KERNEL_TUNING says (auto: by the job's
    size, ``rows`` per training rank, see tuning.Workload), the measured fastest, the default or the floor.
    """
    mode = tuning_mode()
    timed = [0.0]

    def settle() -> Selection:
        started = time.perf_counter()
        if mode == "never" or not plan.tuned:
            selection = tuning.recall(spec, batch_size, plan.tuned)
        else:
            workload = tuning.Workload(rows, plan.passes) if mode == "auto" else None
            selection = tuning.choose(spec, batch_size, plan.threads, operations=plan.tuned, workload=workload)
        timed[0] = time.perf_counter() - started
        return selection

    setup = _in_node_order(comm, settle, lambda selection: warm_up(spec, plan, selection))
    return KernelSetup(setup.compile_seconds, setup.selection, timed[0])


def training_rows_per_rank(comm: MPI.Comm, cfg: Config, source: DataSource) -> int:
    """The job's training rows over the ranks that train (all but the server), without reading them."""
    trainers = comm.Get_size() - 1 if cfg.mode == "federated" else comm.Get_size()
    return -(-source.train_rows(comm.Get_size(), trainers) // max(trainers, 1))


def _in_node_order(comm: MPI.Comm, settle, compile_for) -> KernelSetup:
    """The node's first rank settles the variants and compiles them while the others sleep (they would
    spin in a blocking call and slow it, or skew its timings); then the others take its selection and
    load what it wrote to the JIT cache."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        if node.Get_rank() == 0:
            selection = settle()
            seconds = compile_for(selection)
            node.Ibarrier().Wait()  # a non-blocking barrier matches only its own kind
            node.bcast(selection, root=0)  # once, at setup: a few names
        else:
            _sleep_until(node.Ibarrier())
            selection = node.bcast(None, root=0)
            seconds = compile_for(selection)
    finally:
        node.Free()
    return KernelSetup(seconds, selection)


def _sleep_until(request: MPI.Request) -> None:
    """Wait without spinning, so waiting ranks leave the cores to the compiling one."""
    while not request.Test():
        time.sleep(0.005)


def train(loop: Loop, data: tuple) -> np.ndarray:
    """Run this rank's part of the job; every rank returns the final parameters."""
    comm, cfg, spec = loop.comm, loop.cfg, loop.kernels.spec
    if cfg.mode == "distributed":
        return train_distributed(loop, *data)
    verdict = np.zeros(1)  # whether the last round, which no later downlink reports on, diverged
    if comm.Get_rank() == federated.SERVER:
        test, blocks, rows = data
        strategy = make_strategy(cfg, spec, blocks[-1].stop, loop.chain, rows)
        theta = federated.ServerRounds(loop, test, blocks, strategy, loop.chain).run()
        verdict[0] = divergence(theta, loop.recorder.records[-1].loss)
    else:
        federated_clients.ClientRounds(loop, *data, STRATEGIES[cfg.server.strategy], loop.chain).run()
        theta = spec.zeros()
    comm.Bcast(theta, root=federated.SERVER)
    comm.Bcast(verdict, root=federated.SERVER)
    if verdict[0]:
        raise Diverged(cfg.rounds, int(verdict[0]), cfg.train.lr)
    return theta


def open_writer(comm: MPI.Comm, directory: Path, cfg: Config) -> RunWriter | None:
    return RunWriter(directory, cfg.as_nested()) if is_root(comm) else None


def say(comm: MPI.Comm, text: str) -> None:
    """Print once, from rank 0."""
    if is_root(comm):
        print(text, flush=True)

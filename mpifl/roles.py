"""Who does what: the one module that branches on rank.

Federated mode: rank 0 serves and ranks 1..p-1 are clients.  In every mode,
rank 0 alone writes the run directory and prints, and the first rank of each
node compiles the kernels before the others load them from the cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
from mpi4py import MPI

from mpifl import federated
from mpifl.compile import warm_up
from mpifl.config import Config
from mpifl.data.shards import client_shard, server_test_set, worker_shards
from mpifl.distributed import train_distributed
from mpifl.errors import RankCountError
from mpifl.kernels import ModelKernels
from mpifl.metrics import RunWriter
from mpifl.model import ModelSpec
from mpifl.progress import RoundRecord
from mpifl.strategies import make_strategy

ROOT = 0


def is_root(comm: MPI.Comm) -> bool:
    return comm.Get_rank() == ROOT


def check_rank_count(comm: MPI.Comm, cfg: Config) -> None:
    if cfg["mode"] == "federated" and comm.Get_size() < 2:
        raise RankCountError(
            "Federated mode needs at least 2 ranks (rank 0 serves, the others are clients); "
            f"this job has {comm.Get_size()}. Start more ranks, e.g. "
            "'mpiexec -n 8 python -m mpifl', or train on one rank in distributed mode: "
            "'python -m mpifl run JOB.toml --set mode=distributed'."
        )


def load_data(comm: MPI.Comm, cfg: Config) -> tuple:
    """This rank's data: the test split on the server, a client's or a worker's shard elsewhere."""
    rank, size = comm.Get_rank(), comm.Get_size()
    if cfg["mode"] == "distributed":
        return worker_shards(cfg, rank, size)
    if rank == federated.SERVER:
        return (server_test_set(cfg),)
    return (client_shard(cfg, rank - 1, size - 1),)


def compile_in_node_order(comm: MPI.Comm, spec: ModelSpec, threads: int) -> float:
    """Compile on each node's first rank, then load from the cache on the rest."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        if node.Get_rank() == 0:
            seconds = warm_up(spec, threads)
            node.Ibarrier().Wait()  # a non-blocking barrier matches only its own kind
        else:
            _sleep_until(node.Ibarrier())
            seconds = warm_up(spec, threads)
    finally:
        node.Free()
    return seconds


def _sleep_until(request: MPI.Request) -> None:
    """Wait without spinning, so waiting ranks leave the cores to the compiling one."""
    while not request.Test():
        time.sleep(0.005)


def train(
    comm: MPI.Comm, cfg: Config, data: tuple, kernels: ModelKernels, report: Callable[[RoundRecord], None]
) -> np.ndarray:
    """Run this rank's part of the job; every rank returns the final parameters."""
    if cfg["mode"] == "distributed":
        return train_distributed(comm, cfg, *data, kernels, report)
    if comm.Get_rank() == federated.SERVER:
        theta = federated.serve(comm, cfg, data[0], kernels, make_strategy(cfg), report)
    else:
        federated.participate(comm, cfg, data[0], kernels)
        theta = kernels.spec.zeros()
    comm.Bcast(theta, root=federated.SERVER)
    return theta


def open_writer(comm: MPI.Comm, directory: Path, cfg: Config) -> RunWriter | None:
    return RunWriter(directory, cfg.as_nested()) if is_root(comm) else None


def say(comm: MPI.Comm, text: str) -> None:
    """Print once, from rank 0."""
    if is_root(comm):
        print(text, flush=True)

"""Who does what in every mode: rank 0 alone writes the run directory and prints, and the first rank of each node
compiles the kernels before the others load them from the cache.

What each rank does in a mode (federated mode's server and clients) is the
mode's own (mpifl.modes); its rounds are mpifl.federated's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mpi4py import MPI

from mpifl import tuning
from mpifl.compile import warm_up
from mpifl.config import Config
from mpifl.errors import RankCountError
from mpifl.kernel_plan import KernelPlan
from mpifl.kernels.variants import Selection, tuning_mode
from mpifl.metrics import RunWriter
from mpifl.model import ModelSpec
from mpifl.ranks import ROOT, is_root  # noqa: F401 - the root rank, for the modules that ask roles


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


def check_expected_ranks(comm: MPI.Comm) -> None:
    """The launcher started as many tasks as this communicator has ranks (MPIFL_EXPECT_RANKS, set by the Slurm
    scripts): tasks that came up as singletons fail at once, instead of running the job once each."""
    expected = os.environ.get("MPIFL_EXPECT_RANKS", "")
    if expected.isdigit() and int(expected) != comm.Get_size():
        raise RankCountError(
            f"This process is rank {comm.Get_rank()} of {comm.Get_size()}, but {expected} tasks were started "
            "(MPIFL_EXPECT_RANKS). If every task says 'rank 0 of 1', they came up as singletons: the "
            "launcher and the MPI library disagree (with the mpich wheel use 'srun --mpi=pmi2' or mpiexec)."
        )


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


def open_writer(comm: MPI.Comm, directory: Path, cfg: Config) -> RunWriter | None:
    return RunWriter(directory, cfg.as_nested()) if is_root(comm) else None


def say(comm: MPI.Comm, text: str) -> None:
    """Print once, from rank 0."""
    if is_root(comm):
        print(text, flush=True)

"""Run one job on a communicator, in one pass: validate collectively, load, compile, train, write results.

Every step that differs between federated and distributed mode asks the job's
mode (mpifl.modes): the rank count, the data, the kernels, the stage chain,
the training loop, the banner and the summary.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mpi4py
import numpy as np
from mpi4py import MPI

from mpifl import audit as audits
from mpifl import machine, placement, roles, tuning
from mpifl.agree import collectively
from mpifl.comm import node_occupancy
from mpifl.compile import set_threads
from mpifl.checkpointing import Checkpoints
from mpifl.config import Config
from mpifl.console import Console
from mpifl.data.catalog import model_spec, resolve
from mpifl.errors import ConfigError, Diverged, MpiflError
from mpifl.kernels import ModelKernels, variants
from mpifl.metrics import claim_run_dir, default_run_dir
from mpifl.mpienv import threads_per_rank
from mpifl import model_init
from mpifl.job_result import JobResult
from mpifl.loop import Loop
from mpifl.model_init import Start
from mpifl.modes import Mode, mode_of
from mpifl.models import MODELS
from mpifl.progress import Recorder, RoundRecord, slowest_overall, without_accuracy
from mpifl.selection import BestRound
from mpifl.stopping import StopFlag, Stopped


def run_job(
    comm: MPI.Comm, cfg: Config, out_dir: Path | None = None, verbose: bool = True, resume: bool = False,
    audit: bool = False, overwrite: bool = False, write: bool = True, prune=None,
) -> JobResult:
    """Train the configured job on ``comm``; every rank returns the final parameters.

    Every input is checked on every rank before the first training collective,
    and a failure anywhere raises the same MpiflError everywhere.  With
    ``audit``, each rank records the files it opens and writes the list to
    RUN_DIR/audit/ (mpifl.audit).  With ``write=False`` no run directory is
    written at all (checkpoints and audits, which need one, are refused).
    ``prune`` (a sweep's, mpifl.search.TrialPruner) is asked after each
    recorded round, where early stopping is judged, whether to end the run.
    """
    if audit:
        audits.RECORDER.start()
    own = MODELS[cfg.model.kind].job_runner()  # a kind the round loop does not train runs its own job
    try:
        with placement.pinned(comm, threads_per_rank(cfg.train.threads)):  # an oversubscribed node's computing ranks
            if own is not None:
                source = collectively(comm, lambda: resolve(cfg))
                result = own(comm, cfg, mode_of(cfg), source, out_dir if write else None, verbose, resume,
                             overwrite, write)
            else:
                result = _run_job(comm, cfg, out_dir if write else None, verbose, resume, overwrite, write, prune)
    finally:
        opened = audits.RECORDER.stop() if audit else None
    if opened is not None:
        audits.write(result.run_dir, comm.Get_rank(), opened)
    return result


@dataclass
class _Prepared:
    """Everything settled before the run directory is touched: the data, the model, its kernels, the chain."""

    mode: Mode
    source: object
    spec: object
    start: Start | None  # model.init's parameters, on every rank
    threads: int
    kernels: ModelKernels
    kernel_variants: dict
    compile_seconds: float
    data: tuple
    load_seconds: float
    occupancy: tuple[int, int]
    chain: object


def _prepare(comm: MPI.Comm, cfg: Config, resume: bool, write: bool) -> _Prepared:
    """Validate on every rank, compile the kernels node by node, load this rank's data, build the chain."""
    mode = mode_of(cfg)
    collectively(comm, lambda: roles.check_expected_ranks(comm))
    collectively(comm, lambda: mode.check_ranks(comm))
    if not write:
        collectively(comm, lambda: _check_writeless(cfg, resume))
    source = collectively(comm, lambda: resolve(cfg))
    spec = collectively(comm, lambda: model_spec(cfg, source))
    start = _start(comm, cfg, spec)
    threads = threads_per_rank(cfg.train.threads)
    set_threads(threads)
    collectively(comm, variants.pinned)  # a misspelt MPIFL_KERNEL_VARIANT fails on every rank, before compiling
    collectively(comm, variants.tuning_mode)
    plan = mode.kernel_plan(threads)
    rows = collectively(comm, lambda: mode.rows_per_trainer(comm, source))
    # before the data: the checks that loading runs are kernels too, compiled once per node
    setup = roles.compile_in_node_order(comm, spec, plan, cfg.train.batch_size, rows)
    compile_seconds = comm.allreduce(setup.compile_seconds, op=MPI.MAX)
    kernel_variants = _kernel_variants(comm, setup)
    load_started = time.perf_counter()
    data = collectively(comm, lambda: mode.load(comm, source))
    load_seconds = comm.allreduce(time.perf_counter() - load_started, op=MPI.MAX)
    occupancy = node_occupancy(comm)
    kernels = ModelKernels(spec, threads, setup.selection)
    if start is not None:
        kernels.fix(start.fixed)
    chain = mode.chain(comm, spec, source, data)
    data = mode.prepared(comm, chain, data, source)
    return _Prepared(mode, source, spec, start, threads, kernels, kernel_variants, compile_seconds, data, load_seconds,
                     occupancy, chain)


@dataclass
class _Outputs:
    """Where a run's results go: its directory, checkpoints, the records it resumes with, rank 0's writer."""

    run_dir: Path | None
    checkpoints: Checkpoints
    earlier: list[RoundRecord]
    writer: object


def _open_outputs(comm: MPI.Comm, cfg: Config, spec, out_dir: Path | None, resume: bool, overwrite: bool,
                  write: bool) -> _Outputs:
    """Claim the run directory (rank 0), resume from its checkpoint, and open the writer; on every rank."""
    run_dir = None
    if write:
        if out_dir is None:
            out_dir = comm.bcast(default_run_dir(cfg.mode) if roles.is_root(comm) else None, root=roles.ROOT)
        run_dir = Path(out_dir)
        collectively(comm, lambda: claim_run_dir(run_dir, resume, overwrite) if roles.is_root(comm) else None)
    checkpoints = Checkpoints(comm, run_dir, cfg)
    earlier = checkpoints.resume(spec) if resume else []
    writer = collectively(comm, lambda: _open_writer(comm, run_dir, cfg)) if write else None
    collectively(comm, checkpoints.prepare)
    if writer is not None:
        for record in earlier:
            writer.record(record)
    return _Outputs(run_dir, checkpoints, earlier, writer)


def _run_job(comm: MPI.Comm, cfg: Config, out_dir: Path | None, verbose: bool, resume: bool,
             overwrite: bool, write: bool, prune=None) -> JobResult:
    started = time.perf_counter()
    job = _prepare(comm, cfg, resume, write)
    out = _open_outputs(comm, cfg, job.spec, out_dir, resume, overwrite, write)
    if verbose:
        roles.say(comm, _banner(comm, cfg, job, job.compile_seconds, job.kernel_variants))
        if out.checkpoints.resumed:
            roles.say(comm, f"       resumed from the checkpoint of round {out.checkpoints.start_round} in "
                            f"{out.run_dir}")
        for line in job.chain.banner():
            roles.say(comm, f"       {line}")
    console = Console(cfg.rounds, out.checkpoints.start_round) if verbose and roles.is_root(comm) else None
    try:
        train_started = time.perf_counter()
        recorder = _recorder(job.spec, out, console)
        loop = Loop(comm, cfg, job.kernels, recorder, out.checkpoints, StopFlag(),
                    patient=_oversubscribed(job.occupancy), chain=job.chain,
                    start=job.start.theta if job.start is not None else None,
                    best=BestRound.from_config(cfg, prune),
                    details=out.writer.client_detail if out.writer is not None else None)
        theta = _train(job.mode, loop, job.data, out.writer)
        train_seconds = time.perf_counter() - train_started
        records = comm.bcast(recorder.records, root=roles.ROOT)  # once, after training: clients keep none
        summary = _summary(comm, cfg, job, records, train_seconds, out.checkpoints.start_round, loop)
        summary["setup_seconds"] = train_started - started  # validation, data, compile: before round 1
        summary["wall_seconds"] = time.perf_counter() - started
        summary = comm.bcast(summary, root=roles.ROOT)  # once: every rank returns what rank 0 writes
        if out.writer is not None:
            out.writer.finish(summary, theta, loop.best.theta)
            job.kernels.export(theta, out.run_dir)
    finally:
        if console is not None:
            console.close()
        if out.writer is not None:
            out.writer.close()
    if out.run_dir is not None:
        comm.Barrier()  # the run directory is complete on every rank's return: a next job may read its model.pt
    if verbose:
        roles.say(comm, _closing(summary, out.run_dir))
    return JobResult(theta, records, summary, out.run_dir)


def _recorder(spec, out: _Outputs, console) -> Recorder:
    """Records go to metrics.jsonl (rank 0's writer) and the console as they come; regression has no accuracy."""
    def publish(record: RoundRecord) -> RoundRecord:
        record = record if spec.is_classifier else without_accuracy(record)
        if out.writer is not None:
            out.writer.record(record)
        if console is not None:
            console.show(record)
        return record

    recorder = Recorder(publish)
    recorder.records.extend(out.earlier)
    return recorder


def _train(mode: Mode, loop: Loop, data: tuple, writer) -> np.ndarray:
    """Train; a stop on a signal or a divergence is written down as the run's status before it propagates."""
    size = loop.comm.Get_size()
    try:
        with loop.stop.installed():
            return mode.train(loop, data)
    except Stopped as exc:
        if writer is not None:
            writer.stopped({"status": "stopped", "after_round": exc.after_round, "ranks": size})
        raise
    except Diverged as exc:
        if writer is not None:
            writer.stopped({"status": "diverged", "after_round": exc.after_round, "ranks": size, "message": str(exc)})
        raise


def _start(comm: MPI.Comm, cfg: Config, spec) -> Start | None:
    """model.init's parameters on every rank: the root reads and checks the file (a problem fails every rank
    together), then one Bcast."""
    if not cfg.model.init:
        return None
    loaded = collectively(comm, lambda: model_init.load(cfg.model.init, spec) if roles.is_root(comm) else None)
    theta = loaded.theta if loaded is not None else np.empty(spec.shape, dtype=spec.dtype)
    comm.Bcast(theta, root=roles.ROOT)
    # once, at set-up: where it came from, and the frozen parameters that stay out of theta (small, rare)
    path, digest, fixed = comm.bcast((loaded.path, loaded.sha256, loaded.fixed) if loaded is not None else None,
                                     root=roles.ROOT)
    return Start(theta, path, digest, fixed)


def _check_writeless(cfg: Config, resume: bool) -> None:
    """A run without a directory cannot checkpoint or resume."""
    if cfg.checkpoint.every or resume:
        raise ConfigError(
            f"{'resume' if resume else 'checkpoint.every'} needs a run directory: give one (out=DIR, --out DIR)."
        )


def _oversubscribed(occupancy: tuple[int, int]) -> bool:
    """More ranks than cores on some node; MPIFL_WAIT=poll or spin forces the choice."""
    choice = os.environ.get("MPIFL_WAIT", "").lower()
    if choice in ("poll", "spin"):
        return choice == "poll"
    ranks_per_node, cores_per_node = occupancy
    return ranks_per_node > cores_per_node


def _open_writer(comm, run_dir, cfg):
    try:
        return roles.open_writer(comm, Path(run_dir), cfg)
    except OSError as exc:
        raise MpiflError(f"Cannot write the run directory {run_dir}: {exc.strerror}.") from None


def _summary(comm, cfg, job: _Prepared, records, train_seconds: float, start_round: int, loop: Loop) -> dict:
    last = records[-1]
    rounds_run = last.round - start_round  # the last round is always recorded
    summary = {
        "status": "finished",
        "mode": cfg.mode,
        "ranks": comm.Get_size(),
        "rounds": cfg.rounds,
        "final_loss": last.loss,
        "final_accuracy": last.accuracy,
        "final_test_loss": last.test_loss,
        "downlink_bytes": last.downlink_bytes_total,  # federated: counted at the collectives, every round
        "uplink_bytes": last.uplink_bytes_total,
        "final_val_loss": last.val_loss,  # the validation rows' (mpifl.selection); null without them
        "final_val_accuracy": last.val_accuracy,
        **loop.best.summary(records),  # the best round on stop.metric, never on the test set
        "client_rounds": last.client_rounds,
        "slowest_rank": slowest_overall(records),
        "wall_seconds": None,  # set once the summary is complete
        "train_seconds": train_seconds,
        "compile_seconds": job.compile_seconds,
        "rounds_run": rounds_run,
        "seconds_per_round": train_seconds / max(rounds_run, 1),
        "threads_per_rank": job.threads,
        "mpi_thread_level": mpi4py.rc.thread_level,
        "mpi_library": MPI.Get_library_version().splitlines()[0].strip(),
        "ranks_per_node": job.occupancy[0], "cores_per_node": job.occupancy[1],
        "kernel_variants": job.kernel_variants,
        "model_init": job.start.record() if job.start is not None else None,  # the weights it started from
        "peak_memory_mib_rank0": _peak_memory_mib(),
        "peak_memory_mib_largest_rank": comm.allreduce(_peak_memory_mib(), op=MPI.MAX),  # once, after training
    }
    summary.update(job.mode.summary(job.chain, records))
    summary["load_seconds"] = job.load_seconds  # reading and checking the data, slowest rank
    return summary


def _peak_memory_mib() -> float | None:
    """This process's (rank 0's) peak resident memory so far, in MiB; None where the OS does not say."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)  # bytes on macOS, KiB on Linux


def _kernel_variants(comm: MPI.Comm, setup: roles.KernelSetup) -> dict:
    """The variants every node runs, for the summary: rank 0's node, and the others where they differ."""
    mine = setup.selection.names()
    everyone = comm.allgather(mine)  # once, at setup
    record = {
        **mine,
        "how": setup.selection.how,
        "choice_seconds": comm.allreduce(setup.choice_seconds, op=MPI.MAX),
        "cpu": machine.describe(),
        "pinned_by": variants.PIN_VARIABLE if setup.selection.how == "pinned" else None,
        "note": setup.selection.note or None,
    }
    if any(names != mine for names in everyone):
        record["by_rank"] = everyone  # nodes of different CPUs chose differently
    return record


def _banner(comm, cfg, job: _Prepared, compile_seconds, kernel_variants) -> str:
    spec, threads = job.spec, job.threads
    model = spec.kind.describe(spec)
    chosen = (kernel_variants["note"] if tuning.one_variant(spec) is not None else
              f"{variants.GRADIENT} {kernel_variants[variants.GRADIENT]}, {variants.SGD} "
              f"{kernel_variants[variants.SGD]} ({_how(kernel_variants)})")
    return (
        f"mpifl: {cfg.mode} {model} on {cfg.data.name} ({cfg.data.partition}), "
        f"{job.mode.describe(comm.Get_size())}, {cfg.rounds} rounds, {spec.dtype}\n"
        f"       {threads} thread(s)/rank, MPI thread level {mpi4py.rc.thread_level}, "
        f"kernels ready in {compile_seconds:.2f} s (compile or cache load, not counted below)\n"
        f"       kernel variants: {chosen} on {kernel_variants['cpu']}"
    )


def _how(kernel_variants: dict) -> str:
    how = kernel_variants["how"]
    if how == "measured":
        return f"measured in {kernel_variants['choice_seconds']:.2f} s, cached"
    if how == "pinned":
        return f"pinned by {variants.PIN_VARIABLE}"
    if kernel_variants.get("note"):
        return f"{how}; {kernel_variants['note']}"
    return how


def _closing(summary: dict, run_dir) -> str:
    acc = summary["final_accuracy"]
    acc_text = "n/a" if acc is None or acc != acc else f"{acc:.4f}"  # None: regression; NaN: no test rows
    return (
        f"done: {summary['rounds_run']} rounds in {summary['train_seconds']:.2f} s "
        f"({summary['seconds_per_round'] * 1e3:.1f} ms/round), final train loss "
        f"{summary['final_loss']:.5f}, test accuracy {acc_text}; compile {summary['compile_seconds']:.2f} s, "
        f"wall {summary['wall_seconds']:.2f} s; slowest rank {summary['slowest_rank']}\n"
        f"results: {run_dir if run_dir is not None else 'not written (no run directory)'}"
    )

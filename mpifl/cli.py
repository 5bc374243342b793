"""Command line: ``python -m mpifl [run [JOB.toml]] [--set k=v ...] [--out DIR]`` and ``info``.

Every rank parses the same arguments, so a usage error is raised on all of
them at once and printed once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mpi4py import MPI

from mpifl import audit, config, roles
from mpifl.agree import collectively
from mpifl.errors import EXIT_SWEEP_FAILED, ConfigError
from mpifl.models import MODELS
from mpifl.numba_setup import compile_without_blas
from mpifl.runner import run_job

COMMANDS = ("run", "info", "sweep")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one collective ConfigError."""

    def error(self, message: str):
        raise ConfigError(f"{message}\n{self.format_usage().strip()}", collective=True)


def build_parser(comm: MPI.Comm) -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mpifl", description="Distributed and federated learning on MPI.",
                     epilog="Without mpiexec: python -m mpifl partition --help (cut data into client files), "
                            "python -m mpifl scale --help (scaling studies) and python -m mpifl predict --help "
                            "(a tree model's predictions).")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run a job (the default job if no file is given)")
    run.add_argument("job", nargs="?", type=Path, help="job file (TOML); see jobs/")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one config value; may be repeated")
    run.add_argument("--out", type=Path, help="run directory (default: runs/<mode>-<timestamp>)")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors")
    run.add_argument("--audit", action="store_true",
                     help="write each rank's list of opened files to RUN_DIR/audit/ (also MPIFL_AUDIT=1)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR",
                     help="continue RUN_DIR from its latest checkpoint (the job defaults to RUN_DIR/config.toml)")
    run.add_argument("--overwrite", action="store_true",
                     help="write over the run already in --out (without it, such a directory is refused)")
    sub.add_parser("info", help="show the MPI, thread and JIT settings mpifl runs with")
    sweep = sub.add_parser("sweep", help="run a grid of jobs on groups of ranks (see mpifl.sweep)")
    sweep.add_argument("file", type=Path, help="sweep file (TOML): job, [grid], [set], ranks_per_job, schedule, out")
    sweep.add_argument("--out", type=Path, help="sweep directory (default: the file's out, else runs/sweep-<time>)")
    sweep.add_argument("--quiet", action="store_true", help="print nothing but errors")
    sweep.add_argument("--resume", action="store_true",
                       help="go on with a sweep directory: runs with a finished summary are read back, not rerun")
    return parser


def main(comm: MPI.Comm, argv: list[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or (args_in[0] not in COMMANDS and args_in[0] not in ("-h", "--help")):
        args_in = ["run", *args_in]
    if not roles.is_root(comm) and any(a in ("-h", "--help") for a in args_in):
        return 0
    args = build_parser(comm).parse_args(args_in)
    if args.command == "info":
        roles.say(comm, _info(comm))
        return 0
    if args.command == "sweep":
        return _sweep(comm, args)
    job = args.job
    if args.resume is not None and job is None:
        job = args.resume / "config.toml"
    cfg = collectively(comm, lambda: config.load(job, args.overrides))
    if args.resume is not None and args.out is not None and args.out != args.resume:
        raise ConfigError("--resume continues the run in RUN_DIR; leave out --out.", collective=True)
    if not MODELS[cfg.model.kind].uses_blas:  # the kind's declaration (mpifl.models): its kernels call np.dot
        compile_without_blas()
    run_job(comm, cfg, args.resume or args.out, verbose=not args.quiet, resume=args.resume is not None,
            audit=audit.requested(args.audit), overwrite=args.overwrite)
    return 0


def _sweep(comm: MPI.Comm, args) -> int:
    from dataclasses import replace

    from mpifl.sweep import Sweep, run_sweep

    plan = collectively(comm, lambda: Sweep.read(args.file))
    if args.out is not None:
        plan = replace(plan, out=args.out)
    started = time.perf_counter()
    rows = run_sweep(comm, plan, verbose=not args.quiet, resume=args.resume)
    failed = [row for row in rows if row["status"] == "failed"]  # rows are rank 0's; the others have none
    if roles.is_root(comm):
        if not args.quiet:
            print(f"sweep: {len(rows)} {'runs' if plan.cv else 'points'} ({len(failed)} failed) on "
                  f"{comm.Get_size() // plan.ranks_per_job} groups of {plan.ranks_per_job} rank(s) in "
                  f"{time.perf_counter() - started:.1f} s; {plan.out / 'sweep.csv'}", flush=True)
            if plan.select is not None:
                best = json.loads((plan.out / "best.json").read_text())
                print(f"best: point {best['point']} {best['params']}, mean {plan.select} {best['mean_score']}"
                      f"{' (refit: ' + str(best['refit']['run_dir']) + ')' if best['refit'] else ''}; "
                      f"{plan.out / 'cv_results.csv'}", flush=True)
        for row in failed:
            where = f" fold {row['fold']}" if row["fold"] is not None else ""
            print(f"mpifl: sweep point {row['point']}{where} failed: {row['message']}", file=sys.stderr, flush=True)
    return EXIT_SWEEP_FAILED if comm.bcast(bool(failed), root=0) else 0


def _info(comm: MPI.Comm) -> str:
    import mpi4py
    import numba

    from mpifl.mpienv import threads_per_rank, usable_cores

    return "\n".join(
        [
            f"MPI library      {MPI.Get_library_version().splitlines()[0].strip()}",
            f"ranks            {comm.Get_size()}",
            f"thread level     {mpi4py.rc.thread_level} (set MPIFL_THREAD_LEVEL to override)",
            f"usable cores     {usable_cores()} on rank 0",
            f"threads per rank {threads_per_rank()} (train.threads, else SLURM_CPUS_PER_TASK, else 1)",
            f"numba            {numba.__version__}, cache dir {numba.config.CACHE_DIR or 'next to the sources'}",
            *_variant_lines(),
        ]
    )


def _variant_lines() -> list[str]:
    """The CPU, the kernel variants, and the choices cached for this machine (rank 0's node)."""
    from mpifl import machine, tuning
    from mpifl.kernels import variants

    store = tuning.ChoiceStore()
    pin = variants.pinned()
    lines = [
        f"cpu              {machine.describe()}",
        f"kernel variants  {', '.join(v.name for v in variants.VARIANTS)}"
        + (f"; pinned to {pin.name} by {variants.PIN_VARIABLE}" if pin else
           f"; by job size, measured per node for long jobs ({variants.TUNING_VARIABLE}={variants.tuning_mode()})"),
    ]
    lines += [f"  {v.name:<14} {v.about}" for v in variants.VARIANTS]
    choices = store.read()
    lines.append(f"chosen variants  {len(choices)} shape class(es) cached in {store.path}")
    for key, entry in sorted(choices.items()):
        names = entry.get("variants", {})
        lines.append(f"  {key:<40} " + ", ".join(f"{op} {names[op]}" for op in variants.OPERATIONS if op in names))
    return lines

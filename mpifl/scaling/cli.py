"""``python -m mpifl scale``: run a scaling study here, or render it for Slurm, then analyse it.

    python -m mpifl scale JOB.toml --ranks 1,2,4,8 --kind strong [--repeat 3] [--out DIR]
    python -m mpifl scale STUDY.toml [--sbatch]           # a study file: slurm/studies/
    python -m mpifl scale --collect DIR                   # after the sbatch jobs ran

Runs without MPI itself: it launches one MPI job per point.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import tomli_w

from mpifl.data.catalog import model_spec
from mpifl.errors import ConfigError, MpiflError
from mpifl.scaling import study as studies
from mpifl.scaling.collect import collect, load_probes, write_csv
from mpifl.scaling.launch import render_sbatch, run_local
from mpifl.scaling.projection import (
    DEFAULT_RANKS,
    Inputs,
    Projected,
    describe,
    fit_all,
    project,
)
from mpifl.scaling.study import Study

# set by mpiexec (Hydra, Open MPI) and srun's PMI plugins in every rank they start
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpifl scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", type=Path, help="job file, or a study file with a [study] table")
    parser.add_argument("--ranks", type=studies.parse_ranks, help="rank counts, e.g. 1,2,4,8")
    parser.add_argument("--kind", choices=studies.KINDS, help="strong: same job; weak: same rows per worker")
    parser.add_argument("--repeat", type=int, help="runs per point; the median is reported (default 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a job value at every point; may be repeated")
    parser.add_argument("--out", type=Path, help="study directory (default: runs/scale-<kind>-<timestamp>)")
    parser.add_argument("--sbatch", action="store_true", help="render sbatch files and submit.sh instead of running")
    parser.add_argument("--collect", type=Path, metavar="DIR", help="analyse a study directory whose points ran")
    parser.add_argument("--project", type=studies.parse_ranks, default=DEFAULT_RANKS, metavar="RANKS",
                        help="rank counts of the alpha-beta projection (default 64,...,4096)")
    parser.add_argument("--model-size", type=int, help="parameters of the projected model (default: the job's)")
    parser.add_argument("--no-plot", action="store_true", help="write scaling.csv but no PNG")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if any(v in os.environ for v in LAUNCHER_VARIABLES):
            raise ConfigError("Run 'python -m mpifl scale' without mpiexec or srun: it launches the MPI jobs itself.")
        return _run(args)
    except MpiflError as exc:
        print(f"mpifl scale: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    if args.collect is not None:
        out = args.collect
        study = _read_study(out)
    else:
        study = studies.load(args.job, {"kind": args.kind, "ranks": args.ranks, "repeat": args.repeat,
                                        "overrides": args.overrides})
        study.validate()
        out = args.out or Path("runs") / f"scale-{study.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        _write_study(study, out)
        if args.sbatch:
            files = render_sbatch(study, out)
            print(f"wrote {len(files)} sbatch files to {out / 'sbatch'}; submit them with {out / 'submit.sh'}")
            print(f"when they have finished: python -m mpifl scale --collect {out}")
            return 0
        run_local(study, out)
    analyse(study, out, args.project, args.model_size, plot=not args.no_plot)
    return 0


def analyse(study: Study, out: Path, project_ranks, model_size: int | None, plot: bool = True) -> None:
    """Write scaling.csv, projection.txt and scaling.png, and print the table and projection."""
    rows = collect(study, out)
    write_csv(rows, out / "scaling.csv")
    print(_table(rows))
    projected: list[Projected] = []
    samples, probe_ranks = load_probes(study, out)
    if samples:
        base_cfg = study.config(rows[0].ranks)
        inputs = Inputs(
            kind=study.kind, base_ranks=rows[0].ranks, base_workers=rows[0].workers,
            base_compute_seconds=rows[0].compute_seconds,
            base_train_rows=rows[0].train_rows,
            model_size=model_size or model_spec(base_cfg).size, fits=fit_all(samples), probe_ranks=probe_ranks,
        )
        measured = {r.ranks: r.seconds_per_round for r in rows if r.ranks >= 2}
        ranks = sorted(set(measured) | set(project_ranks))
        projected = [project(base_cfg, inputs, p, measured.get(p)) for p in ranks]
        text = describe(inputs, projected)
        (out / "projection.txt").write_text(text + "\n")
        print(text)
    else:
        print("no projection: the alpha-beta fit needs probes from at least one point with 2 or more ranks")
    if plot:
        from mpifl.scaling.plot import plot as draw

        draw(rows, projected, out / "scaling.png", f"mpifl {study.kind} scaling: {study.job or 'default job'}")
    print(f"results: {out / 'scaling.csv'}" + ("" if not plot else f", {out / 'scaling.png'}"))


def _table(rows) -> str:
    header = (f"{'ranks':>5} {'workers':>7} {'ms/round':>9} {'compute':>8} {'comm':>8} {'wait':>8} "
              f"{'speedup':>8} {'ideal':>6} {'efficiency':>10}")
    lines = [header]
    for r in rows:
        lines.append(
            f"{r.ranks:5d} {r.workers:7d} {r.seconds_per_round * 1e3:9.3f} {r.compute_seconds * 1e3:8.3f} "
            f"{r.transfer_seconds * 1e3:8.3f} {r.wait_seconds * 1e3:8.3f} {r.speedup:8.2f} {r.ideal_speedup:6.0f} "
            f"{r.efficiency:10.1%}" + ("  (more ranks than cores)" if r.oversubscribed else "")
        )
    return "\n".join(lines)


def _write_study(study: Study, out: Path) -> None:
    table = {"study": {"kind": study.kind, "ranks": list(study.ranks), "repeat": study.repeat,
                       "set": list(study.overrides)},
             "slurm": asdict(study.slurm)}
    if study.job is not None:
        table["study"]["job"] = str(Path(study.job).resolve())
    (out / "study.toml").write_text(tomli_w.dumps(table))


def _read_study(out: Path) -> Study:
    path = out / "study.toml"
    if not path.exists():
        raise ConfigError(f"{out} is not a study directory: it has no study.toml.")
    return studies.load(path, {})

"""Run a study's points here with mpiexec, or render them as sbatch files for a cluster.

Every point writes an ordinary mpifl run directory under OUT/points/, and
every rank count >= 2 gets a collective probe under OUT/probe/, so the
results are collected the same way wherever the points ran.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mpifl.errors import MpiflError
from mpifl.scaling.study import Study


@dataclass(frozen=True)
class Point:
    ranks: int
    repeat: int

    @property
    def name(self) -> str:
        return f"p{self.ranks:04d}-r{self.repeat}"


def points(study: Study) -> list[Point]:
    return [Point(ranks, rep) for ranks in study.ranks for rep in range(study.repeat)]


def run_dir(out: Path, point: Point) -> Path:
    return out / "points" / point.name


def probe_file(out: Path, ranks: int) -> Path:
    return out / "probe" / f"p{ranks:04d}.json"


def mpifl_args(study: Study, point: Point, out: Path) -> list[str]:
    """``python -m mpifl run ...`` arguments of one point (without the launcher)."""
    job = [str(study.job)] if study.job is not None else []
    sets = [arg for text in (*study.overrides, *study.point_overrides(point.ranks)) for arg in ("--set", text)]
    return [sys.executable, "-m", "mpifl", "run", *job, *sets, "--out", str(run_dir(out, point)), "--quiet"]


def probe_args(out: Path, ranks: int) -> list[str]:
    return [sys.executable, "-m", "mpifl.scaling.probe", str(probe_file(out, ranks))]


def find_mpiexec() -> str:
    found = shutil.which("mpiexec") or shutil.which("mpirun")
    if found is None:
        raise MpiflError("No mpiexec on PATH. Install the mpich wheel (pip install mpich) or load your MPI module.")
    return found


def run_local(study: Study, out: Path, say=print, timeout: float = 3600.0) -> None:
    """Run every point here, one after another, then the probes."""
    mpiexec = find_mpiexec()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for point in points(study):
        say(f"scale: {point.ranks} ranks, repeat {point.repeat + 1}/{study.repeat}")
        _launch([mpiexec, "-n", str(point.ranks), *mpifl_args(study, point, out)], point.ranks,
                logs / f"{point.name}.log", timeout)
    for ranks in study.ranks:
        if ranks >= 2:
            say(f"scale: measuring collectives on {ranks} ranks")
            _launch([mpiexec, "-n", str(ranks), *probe_args(out, ranks)], ranks, logs / f"probe-p{ranks:04d}.log", timeout)


def _launch(cmd: list[str], ranks: int, log: Path, timeout: float) -> None:
    env = {**os.environ, "MPIFL_EXPECT_RANKS": str(ranks)}
    with open(log, "w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise MpiflError(f"{shlex.join(cmd[:3])} ... ran past {timeout:.0f} s; see {log}.") from None
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise MpiflError(f"A study point failed with exit code {proc.returncode} ({log}):\n{tail}")


SBATCH_TEMPLATE = """#!/usr/bin/env bash
#SBATCH --job-name=mpifl-scale-p{ranks}
#SBATCH --ntasks={ranks}
#SBATCH --cpus-per-task={cpus_per_task}
#SBATCH --time={time}
#SBATCH --output={log}
{extra}
# mpifl scaling point: {ranks} ranks, {repeat} repeat(s), then the collective probe.
# Rendered by: python -m mpifl scale ... --sbatch; collect with: python -m mpifl scale --collect {out}
set -euo pipefail
cd {cwd}
export MPIFL_EXPECT_RANKS=$SLURM_NTASKS
export PYTHONUNBUFFERED=1
{runs}
"""


def launcher(study: Study) -> str:
    opts = study.slurm
    if opts.launcher == "mpiexec":
        return 'mpiexec -n "$SLURM_NTASKS"'
    if opts.launcher != "srun":
        raise MpiflError(f"The study's slurm.launcher must be 'srun' or 'mpiexec'. Got {opts.launcher!r} instead.")
    return f"srun --mpi={opts.srun_mpi} --kill-on-bad-exit=1"


def render_sbatch(study: Study, out: Path) -> list[Path]:
    """One sbatch file per rank count (its repeats run in one allocation), and submit.sh."""
    directory = out / "sbatch"
    directory.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    opts = study.slurm
    files = []
    for ranks in study.ranks:
        extra = []
        if opts.tasks_per_node:
            extra += [f"#SBATCH --nodes={-(-ranks // opts.tasks_per_node)}",
                      f"#SBATCH --ntasks-per-node={min(ranks, opts.tasks_per_node)}"]
        extra += [f"#SBATCH --partition={opts.partition}"] * bool(opts.partition)
        extra += [f"#SBATCH --account={opts.account}"] * bool(opts.account)
        extra += ["#SBATCH --exclusive"] * opts.exclusive
        commands = [shlex.join(mpifl_args(study, Point(ranks, rep), out.resolve())) for rep in range(study.repeat)]
        if ranks >= 2:
            commands.append(shlex.join(probe_args(out.resolve(), ranks)))
        text = SBATCH_TEMPLATE.format(
            ranks=ranks, cpus_per_task=opts.cpus_per_task, time=opts.time, repeat=study.repeat,
            log=(out / "logs" / f"p{ranks:04d}.out").resolve(), extra="\n".join(extra), out=out,
            cwd=shlex.quote(str(Path.cwd())), runs="\n".join(f"{launcher(study)} {cmd}" for cmd in commands),
        )
        path = directory / f"p{ranks:04d}.sbatch"
        path.write_text(text)
        files.append(path)
    submit = out / "submit.sh"
    submit.write_text(
        "#!/usr/bin/env bash\n# Submit every point of this study; then: python -m mpifl scale --collect "
        f"{out}\nset -euo pipefail\n" + "".join(f"sbatch --parsable {shlex.quote(str(f.resolve()))}\n" for f in files)
    )
    submit.chmod(0o755)
    return files

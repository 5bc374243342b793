"""Sweeps: many small jobs inside one allocation, each on a sub-communicator of ``ranks_per_job`` ranks.

    mpiexec -n 8 python -m mpifl sweep SWEEP.toml

A sweep file names a job, a grid of overrides (their product is the list of
points) and how many ranks each point runs on.  COMM_WORLD is split into
groups of that size; the groups run the points as they free up (dynamic: a
shared counter on rank 0, taken with MPI_Fetch_and_op) or in a fixed
round-robin (static).  Each point is an ordinary run (mpifl.runner.run_job)
on its group, so it gives bitwise the model the same job gives alone on that
many ranks, and it writes its own run directory.  A point that fails with an
MpiflError (a bad value, divergence) is recorded with its message and the
others go on.  Rank 0 writes sweep.csv with every point's final metrics.
"""

from __future__ import annotations

import csv
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from mpifl import api
from mpifl.agree import collectively
from mpifl.config import read_toml
from mpifl.errors import ConfigError, MpiflError
from mpifl.runner import run_job

SCHEDULES = ("dynamic", "static")
COLUMNS = ("point", "status", "group", "final_loss", "final_accuracy", "best_accuracy", "seconds_per_round",
           "wall_seconds", "run_dir", "message")


@dataclass(frozen=True)
class Sweep:
    job: Path | None
    grid: dict[str, list]  # dotted key -> values; the points are their product, in file order
    fixed: dict[str, Any]  # overrides every point gets
    ranks_per_job: int
    schedule: str
    out: Path

    @classmethod
    def read(cls, path: Path) -> Sweep:
        """Read and check a sweep file; every problem names the file and the key."""
        table = read_toml(path, "sweep file")
        unknown = set(table) - {"job", "grid", "set", "ranks_per_job", "schedule", "out"}
        if unknown:
            raise ConfigError(f"Unknown key(s) {', '.join(sorted(unknown))} in {path}. Valid keys: job, grid, set, "
                              "ranks_per_job, schedule, out.")
        grid = _dotted(table.get("grid", {}))
        if not grid or any(not isinstance(v, list) or not v for v in grid.values()):
            raise ConfigError(f"The [grid] of {path} must give each key a non-empty list of values.")
        ranks = table.get("ranks_per_job", 1)
        if not isinstance(ranks, int) or ranks < 1:
            raise ConfigError(f"The 'ranks_per_job' parameter in {path} must be an int >= 1. Got {ranks!r} instead.")
        schedule = table.get("schedule", "dynamic")
        if schedule not in SCHEDULES:
            raise ConfigError(f"The 'schedule' parameter in {path} must be one of {SCHEDULES}. Got {schedule!r}.")
        job = Path(path).parent / table["job"] if "job" in table else None
        out = Path(table.get("out", f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}"))
        return cls(job, grid, _dotted(table.get("set", {})), ranks, schedule, out)

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]

    def check_points(self) -> None:
        """Validate every point's job before any point runs; one error lists every invalid point."""
        problems = []
        for index, point in enumerate(self.points()):
            try:
                api.job(self.job, **{**self.fixed, **point})
            except ConfigError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
                problems.append(f"  point {index} ({shown}): {exc}")
        if problems:
            raise ConfigError(f"{len(problems)} of {len(self.points())} sweep points are invalid; no point was run:\n"
                              + "\n".join(problems))


def run_sweep(comm: MPI.Comm, sweep: Sweep, verbose: bool = True) -> list[dict]:
    """Run every point on groups of sweep.ranks_per_job ranks; rank 0 returns the rows of sweep.csv."""
    size, rank = comm.Get_size(), comm.Get_rank()
    collectively(comm, lambda: _check_fit(sweep, size))
    collectively(comm, sweep.check_points)
    # MPIFL_EXPECT_RANKS counts the whole allocation; each point runs on a group, so it is checked here, once
    expected = os.environ.pop("MPIFL_EXPECT_RANKS", "")
    collectively(comm, lambda: _check_expected(expected, comm))
    points = sweep.points()
    collectively(comm, lambda: _claim(sweep.out) if rank == 0 else None)
    color = rank // sweep.ranks_per_job
    groups = size // sweep.ranks_per_job
    group = comm.Split(color, rank)
    counter = _Counter(comm)
    rows = []
    try:
        index = _first(sweep, color, counter, group)
        while index < len(points):
            rows.append(_run_point(group, sweep, index, points[index], color, verbose))
            index = _next(sweep, index, groups, counter, group)
    finally:
        counter.free()
        group.Free()
    everyone = comm.gather(rows if group_rank(comm, sweep) == 0 else [], root=0)  # once, at the end
    if rank != 0:
        return []
    table = sorted((row for part in everyone for row in part), key=lambda row: row["point"])
    _write_csv(sweep.out / "sweep.csv", table, list(sweep.grid))
    return table


def group_rank(comm: MPI.Comm, sweep: Sweep) -> int:
    return comm.Get_rank() % sweep.ranks_per_job


def _claim(out: Path) -> None:
    """Refuse a directory that already holds a sweep: its points would all be refused one by one."""
    if (out / "sweep.csv").exists() or any(out.glob("point-*")):
        raise ConfigError(f"The sweep directory {out} already holds a sweep. Choose another out (in the sweep file "
                          "or with --out), or remove it.")


def _check_expected(expected: str, comm: MPI.Comm) -> None:
    if expected.isdigit() and int(expected) != comm.Get_size():
        raise ConfigError(f"This process is rank {comm.Get_rank()} of {comm.Get_size()}, but {expected} tasks were "
                          "started (MPIFL_EXPECT_RANKS): the launcher and the MPI library disagree.")


def _check_fit(sweep: Sweep, size: int) -> None:
    if size % sweep.ranks_per_job:
        raise ConfigError(f"The sweep runs each point on ranks_per_job={sweep.ranks_per_job} ranks, but the job has "
                          f"{size}: start a multiple of {sweep.ranks_per_job} ranks.")


def _run_point(group: MPI.Comm, sweep: Sweep, index: int, point: dict, color: int, verbose: bool) -> dict:
    """One point on this group; an MpiflError becomes a failed row on every rank of the group."""
    run_dir = sweep.out / f"point-{index:04d}"
    started = time.perf_counter()
    row = {"point": index, "group": color, "run_dir": str(run_dir), **point}
    try:
        cfg = collectively(group, lambda: api.job(sweep.job, **{**sweep.fixed, **point}))
        result = run_job(group, cfg, run_dir, verbose=False)
    except MpiflError as exc:
        row.update(status="failed", message=str(exc), wall_seconds=time.perf_counter() - started)
    else:
        s = result.summary
        row.update(status="finished", final_loss=s["final_loss"], final_accuracy=s["final_accuracy"],
                   best_accuracy=s["best_accuracy"], seconds_per_round=s["seconds_per_round"],
                   wall_seconds=time.perf_counter() - started, message="")
    if verbose and group.Get_rank() == 0:
        shown = ", ".join(f"{k}={v}" for k, v in point.items())
        detail = row["message"] if row["status"] == "failed" else f"final accuracy {_fmt(row['final_accuracy'])}"
        print(f"point {index} ({shown}) on group {color}: {row['status']}, {detail}", flush=True)
    return row


class _Counter:
    """The next point's index, one integer on rank 0 that every group leader takes from atomically."""

    def __init__(self, comm: MPI.Comm):
        self.win = MPI.Win.Allocate(8 if comm.Get_rank() == 0 else 0, 8, comm=comm)
        if comm.Get_rank() == 0:
            np.frombuffer(self.win.tomemory(), dtype=np.int64)[0] = 0
        comm.Barrier()  # the counter starts at 0 before anyone takes from it

    def take(self) -> int:
        one, got = np.ones(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        self.win.Lock(0, MPI.LOCK_SHARED)
        self.win.Fetch_and_op(one, got, 0, op=MPI.SUM)
        self.win.Unlock(0)
        return int(got[0])

    def free(self) -> None:
        self.win.Free()


def _first(sweep: Sweep, color: int, counter: _Counter, group: MPI.Comm) -> int:
    if sweep.schedule == "static":
        return color
    return group.bcast(counter.take() if group.Get_rank() == 0 else None, root=0)


def _next(sweep: Sweep, index: int, groups: int, counter: _Counter, group: MPI.Comm) -> int:
    if sweep.schedule == "static":
        return index + groups
    return group.bcast(counter.take() if group.Get_rank() == 0 else None, root=0)


def _write_csv(path: Path, rows: list[dict], grid_keys: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["point", *grid_keys, *[c for c in COLUMNS if c != "point"]]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def _dotted(table: dict) -> dict:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"

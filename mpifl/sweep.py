"""Sweeps: many small jobs inside one allocation, each on a sub-communicator of ``ranks_per_job`` ranks, and the
model selection on top of them (GridSearchCV's, in mpifl's files).

    mpiexec -n 8 python -m mpifl sweep SWEEP.toml [--resume]

A sweep file names a job, the points to try (a ``[grid]``, or a ``[space]``
searched at random or by Optuna, mpifl.search), fixed overrides in
``[set]``, and how many ranks each run gets.  COMM_WORLD is split into
groups of that size; the groups take the runs as they free up (dynamic: a
shared counter on rank 0, taken with MPI_Fetch_and_op) or in a fixed
round-robin (static).  Each run is an ordinary run (mpifl.runner.run_job)
on its group, so it gives bitwise the model the same job gives alone on that
many ranks, and it writes its own run directory.

With ``select`` (a recorded metric, never the test set's, mpifl.selection),
the sweep chooses: with ``cv = K`` every point runs once per fold (folds of
clients in federated mode, of rows in distributed mode,
mpifl.data.validation), its score is the mean over the folds, and rank 0
writes ``cv_results.csv`` and ``best.json``; ``refit = true`` then trains
the best point on all the training rows and reports its test figures, the
only ones the selection never saw.  A run that fails (divergence) is
recorded with its message and the others go on.  ``--resume`` reruns only
the runs without a finished summary.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from mpifl import api
from mpifl.agree import collectively
from mpifl.config import read_toml
from mpifl.data import validation
from mpifl.data.catalog import resolve
from mpifl.errors import ConfigError, MpiflError
from mpifl.modes import mode_of
from mpifl.runner import run_job
from mpifl.search import PRUNERS, SEARCHES, Dimension, OptunaSearch, TrialPruner, grid_points, random_points
from mpifl.selection import SELECTABLE, check_metric, direction

SCHEDULES = ("dynamic", "static")
SCORES = ("final", "best")
KEYS = ("job", "grid", "space", "set", "ranks_per_job", "schedule", "out", "select", "direction", "score", "cv",
        "refit", "search", "trials", "prune", "seed")
COLUMNS = ("point", "fold", "group", "status", "score", "final_loss", "final_accuracy", "final_val_loss", "final_val_accuracy",
           "best_round", "best_value", "rounds_run", "client_rounds", "seconds_per_round", "wall_seconds", "run_dir",
           "message")


@dataclass(frozen=True)
class Sweep:
    job: Path | None
    grid: dict[str, list]  # dotted key -> values; the points are their product, in file order
    fixed: dict[str, Any]  # overrides every point gets
    ranks_per_job: int
    schedule: str
    out: Path
    select: str | None = None  # the metric that chooses (mpifl.selection.SELECTABLE); None: no choice
    direction: str = "max"
    score: str = "final"  # a run's score: its last record's value of select, or its best round's
    cv: int = 0  # K-fold cross-validation; 0: each point runs once
    refit: bool = False
    search: str = "grid"
    space: tuple[Dimension, ...] = ()
    trials: int = 0
    prune: str = "none"
    seed: int = 0  # the search's own seed (random draws, Optuna's sampler)
    source: str = field(default="<sweep>", compare=False)

    @classmethod
    def read(cls, path: Path) -> Sweep:
        """Read and check a sweep file; every problem names the file and the key."""
        table = read_toml(path, "sweep file")
        unknown = set(table) - set(KEYS)
        if unknown:
            raise ConfigError(f"Unknown key(s) {', '.join(sorted(unknown))} in {path}. Valid keys: "
                              f"{', '.join(KEYS)}.")
        search = _choice(table, "search", "grid", SEARCHES, path)
        grid = _dotted(table.get("grid", {}))
        space = tuple(Dimension.read(k, v, str(path)) for k, v in _dotted(table.get("space", {}), leaves=True).items())
        if search == "grid":
            if not grid or any(not isinstance(v, list) or not v for v in grid.values()):
                raise ConfigError(f"The [grid] of {path} must give each key a non-empty list of values.")
            if space:
                raise ConfigError(f"{path} has a [space], which search = \"random\" or \"optuna\" draws from; a grid "
                                  "search takes [grid].")
        else:
            if not space:
                raise ConfigError(f"search = {search!r} in {path} draws from a [space]: give each searched key a "
                                  "range ({low, high[, log][, int]}) or {choices = [...]}.")
            if grid:
                raise ConfigError(f"{path} has a [grid] and search = {search!r}; a search draws from [space] alone.")
        ranks = _int(table, "ranks_per_job", 1, 1, path)
        trials = _int(table, "trials", 0, 0, path)
        if search != "grid" and trials < 1:
            raise ConfigError(f"search = {search!r} in {path} needs trials >= 1 (how many points to try).")
        select = table.get("select")
        if select is not None:
            check_metric(select, f"'select' of {path}")
        sense = table.get("direction", direction(select) if select else "max")
        if sense not in ("min", "max"):
            raise ConfigError(f"The 'direction' parameter in {path} must be 'min' or 'max'. Got {sense!r}.")
        cv = _int(table, "cv", 0, 0, path)
        if cv == 1:
            raise ConfigError(f"The 'cv' parameter in {path} is 1; K-fold cross-validation needs K >= 2 (0: none).")
        refit = table.get("refit", False)
        prune = _choice(table, "prune", "none", PRUNERS, path)
        needs_select = [k for k, on in (("cv", cv), ("refit", refit), ("search", search != "grid")) if on]
        if needs_select and select is None:
            raise ConfigError(f"{', '.join(needs_select)} in {path} choose a point: name the metric that chooses, "
                              f"select = \"val_accuracy\" (or one of {', '.join(SELECTABLE)}).")
        if prune != "none" and (search != "optuna" or cv):
            raise ConfigError(f"prune = {prune!r} in {path} stops Optuna's hopeless trials from their per-round "
                              "scores; it needs search = \"optuna\" and no cv (a fold's curve is not a trial's).")
        job = Path(path).parent / table["job"] if "job" in table else None
        out = Path(table.get("out", f"runs/sweep-{time.strftime('%Y%m%d-%H%M%S')}"))
        return cls(job, grid, _dotted(table.get("set", {})), ranks, _choice(table, "schedule", "dynamic", SCHEDULES, path),
                   out, select, sense, _choice(table, "score", "final", SCORES, path), cv, bool(refit), search, space,
                   trials, prune, _int(table, "seed", 0, 0, path), str(path))

    def points(self) -> list[dict[str, Any]]:
        """The points a grid or random search tries, in order (Optuna's are asked as the sweep runs)."""
        if self.search == "grid":
            return grid_points(self.grid)
        if self.search == "random":
            return random_points(list(self.space), self.trials, self.seed)
        raise ValueError("Optuna's points are asked as the sweep runs")

    def overrides(self, point: dict, fold: int | None) -> dict[str, Any]:
        """A run's overrides: [set], the point, the selection metric, and the fold it holds out."""
        judged = {"stop.metric": self.select} if self.select is not None else {}
        held = {"data.folds": self.cv, "data.fold": fold} if fold is not None else {}
        return {**self.fixed, **point, **judged, **held}

    def check_points(self) -> None:
        """Validate every point's job before any point runs; one error lists every invalid point."""
        samples = self.points() if self.search != "optuna" else [_corner(self.space, low) for low in (True, False)]
        problems = []
        for index, point in enumerate(samples):
            try:
                self._check_point(point)
            except (ConfigError, MpiflError) as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
                problems.append(f"  point {index} ({shown}): {exc}")
        if problems:
            raise ConfigError(f"{len(problems)} of {len(samples)} sweep points are invalid; no point was run:\n"
                              + "\n".join(problems))

    def _check_point(self, point: dict) -> None:
        cfg = api.job(self.job, **_settings(self.overrides(point, 0 if self.cv else None)))
        if self.select is not None and self.select.startswith("val_") and not (
                self.cv or cfg.data.validation_fraction or cfg.data.path):
            raise ConfigError(f"select = {self.select!r} is never recorded: the job holds no validation rows. Set "
                              "cv, or data.validation_fraction in [set].")
        if self.cv:
            validation.check(self.cv, 0, 0.0, *mode_of(cfg).validation_units(resolve(cfg), self.ranks_per_job))


@dataclass(frozen=True)
class Unit:
    """One run of a sweep: point ``point`` (with its overrides), on fold ``fold`` (None: no cv)."""

    point: int
    params: dict
    fold: int | None

    def run_dir(self, out: Path) -> Path:
        base = out / f"point-{self.point:04d}"
        return base if self.fold is None else base / f"fold-{self.fold}"


def run_sweep(comm: MPI.Comm, sweep: Sweep, verbose: bool = True, resume: bool = False) -> list[dict]:
    """Run every point on groups of sweep.ranks_per_job ranks; rank 0 returns the rows of sweep.csv and writes the
    selection's files."""
    size, rank = comm.Get_size(), comm.Get_rank()
    collectively(comm, lambda: _check_fit(sweep, size))
    collectively(comm, sweep.check_points)
    # MPIFL_EXPECT_RANKS counts the whole allocation; each point runs on a group, so it is checked here, once
    expected = os.environ.pop("MPIFL_EXPECT_RANKS", "")
    collectively(comm, lambda: _check_expected(expected, comm))
    collectively(comm, lambda: _claim(sweep.out) if rank == 0 and not resume else None)
    search = collectively(comm, lambda: _search(sweep) if rank == 0 else None)
    group = comm.Split(rank // sweep.ranks_per_job, rank)
    try:
        rows = _run_waves(comm, group, sweep, search, verbose, resume)
        refit = _refit(comm, group, sweep, rows, verbose, resume) if sweep.refit else None
    finally:
        group.Free()
    if rank != 0:
        return []
    _write_csv(sweep.out / "sweep.csv", rows, _param_keys(sweep, rows), COLUMNS)
    if sweep.select is not None:
        results = cv_results(rows, sweep)
        _write_csv(sweep.out / "cv_results.csv", results, _param_keys(sweep, rows), result_columns(sweep))
        write_best(sweep.out / "best.json", results, sweep, refit)
    return rows


def _search(sweep: Sweep):
    return OptunaSearch(list(sweep.space), sweep.direction, sweep.seed, sweep.prune) if sweep.search == "optuna" \
        else None


def _run_waves(comm: MPI.Comm, group: MPI.Comm, sweep: Sweep, search, verbose: bool, resume: bool) -> list[dict]:
    """Grid and random search: one wave of every run.  Optuna: waves of as many trials as the groups hold, each
    asked on rank 0 and told its score once the wave is done."""
    groups = comm.Get_size() // sweep.ranks_per_job
    folds = list(range(sweep.cv)) if sweep.cv else [None]
    if sweep.search != "optuna":
        units = [Unit(i, p, f) for i, p in enumerate(sweep.points()) for f in folds]
        return _run_units(comm, group, sweep, units, None, verbose, resume)
    rows: list[dict] = []
    per_wave = max(1, -(-groups // len(folds)))
    asked = 0
    while asked < sweep.trials:
        count = min(per_wave, sweep.trials - asked)
        wave = comm.bcast(([search.ask() for _ in range(count)], search.history()) if comm.Get_rank() == 0 else None)
        trials, history = wave  # once per wave: the trials' points, and the finished trials for the pruners
        units = [Unit(number, params, f) for number, params in trials for f in folds]
        pruning = (history, sweep.direction, sweep.prune, sweep.select) if sweep.prune != "none" else None
        done = _run_units(comm, group, sweep, units, pruning, verbose, resume)
        if comm.Get_rank() == 0:
            for result in cv_results(done, sweep):
                curve = result.pop("_curve")
                search.tell(result["point"], result["mean_score"], curve, result["state"] == "pruned")
        rows.extend(done)
        asked += count
    return rows


def _run_units(comm: MPI.Comm, group: MPI.Comm, sweep: Sweep, units: list[Unit], pruning, verbose: bool,
               resume: bool) -> list[dict]:
    """Run the units over the groups (dynamic or static); rank 0 returns every unit's row, in unit order."""
    color = comm.Get_rank() // sweep.ranks_per_job
    groups = comm.Get_size() // sweep.ranks_per_job
    counter = _Counter(comm)
    rows = []
    try:
        index = _first(sweep, color, counter, group)
        while index < len(units):
            rows.append(_run_unit(group, sweep, units[index], color, pruning, verbose, resume))
            index = _next(sweep, index, groups, counter, group)
    finally:
        counter.free()
    everyone = comm.gather(rows if group.Get_rank() == 0 else [], root=0)  # once per wave
    if comm.Get_rank() != 0:
        return []
    order = {(u.point, u.fold): i for i, u in enumerate(units)}
    return sorted((row for part in everyone for row in part), key=lambda row: order[row["point"], row["fold"]])


def _run_unit(group: MPI.Comm, sweep: Sweep, unit: Unit, color: int, pruning, verbose: bool, resume: bool) -> dict:
    """One run on this group; an MpiflError becomes a failed row on every rank of the group."""
    run_dir = unit.run_dir(sweep.out)
    started = time.perf_counter()
    row = {"point": unit.point, "fold": unit.fold, "group": color, "run_dir": str(run_dir), **unit.params}
    done = group.bcast(_finished(run_dir, sweep) if resume and group.Get_rank() == 0 else None)
    if done is not None:
        row.update(done, wall_seconds=done.get("wall_seconds"))
        return row
    try:
        cfg = collectively(group, lambda: api.job(sweep.job, **_settings(sweep.overrides(unit.params, unit.fold))))
        prune = TrialPruner(*pruning) if pruning is not None else None
        result = run_job(group, cfg, run_dir, verbose=False, overwrite=resume, prune=prune)
    except MpiflError as exc:
        row.update(status="failed", message=str(exc), wall_seconds=time.perf_counter() - started, score=math.nan,
                   _curve=[])
    else:
        row.update(summarised(result.summary, _curve(result.records, sweep.select), sweep),
                   wall_seconds=time.perf_counter() - started)
    if verbose and group.Get_rank() == 0:
        shown = ", ".join(f"{k}={_show(v)}" for k, v in unit.params.items())
        where = f" fold {unit.fold}" if unit.fold is not None else ""
        detail = row["message"] if row["status"] == "failed" else (
            f"{sweep.select} {_fmt(row['score'])}" if sweep.select else f"final accuracy {_fmt(row['final_accuracy'])}")
        print(f"point {unit.point}{where} ({shown}) on group {color}: {row['status']}, {detail}", flush=True)
    return row


def summarised(summary: dict, curve: list[tuple[int, float]], sweep: Sweep) -> dict:
    """A finished run's row: its summary's figures and its score on the selection metric."""
    status = "pruned" if summary.get("pruned") else "finished"
    if sweep.select is None:
        score = math.nan
    elif sweep.score == "best":
        score = _number(summary.get("best_value"))
    else:
        score = curve[-1][1] if curve else math.nan
    keep = ("final_loss", "final_accuracy", "final_val_loss", "final_val_accuracy", "best_round", "best_value",
            "rounds_run", "client_rounds", "seconds_per_round")
    return {"status": status, "message": "", "score": score, "_curve": curve, **{k: summary.get(k) for k in keep}}


def _curve(records, metric: str | None) -> list[tuple[int, float]]:
    """(round, value) of the selection metric on every recorded round that has one."""
    if metric is None:
        return []
    return [(r.round, float(getattr(r, metric))) for r in records
            if getattr(r, metric) is not None and math.isfinite(getattr(r, metric))]


def _finished(run_dir: Path, sweep: Sweep) -> dict | None:
    """A finished run's row read back from its directory (--resume), or None to run it."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except (OSError, ValueError):
        return None
    if summary.get("status") != "finished":
        return None
    curve = []
    for line in lines:
        record = json.loads(line)
        value = record.get(sweep.select) if sweep.select else None
        if value is not None:
            curve.append((record["round"], float(value)))
    row = summarised(summary, curve, sweep)
    row["wall_seconds"] = summary.get("wall_seconds")
    return row


def cv_results(rows: list[dict], sweep: Sweep) -> list[dict]:
    """GridSearchCV's cv_results_, one row per point: each fold's score, their mean and std, the rank (1 best; a
    tie goes to the earlier point, failed points last), the mean and std run time, and the client rounds."""
    by_point: dict[int, list[dict]] = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    out = []
    for point, runs in by_point.items():
        runs = sorted(runs, key=lambda r: -1 if r["fold"] is None else r["fold"])
        scores = np.array([_number(r.get("score")) for r in runs])
        times = np.array([_number(r.get("wall_seconds")) for r in runs])
        states = {r["status"] for r in runs}
        state = "failed" if "failed" in states else "pruned" if "pruned" in states else "complete"
        result = {"point": point, **{k: v for k, v in runs[0].items() if k in _param_keys(sweep, rows)}}
        for i, score in enumerate(scores):
            result[f"split{i}_score"] = score
        result.update(mean_score=float(scores.mean()), std_score=float(scores.std()),
                      mean_fit_time=float(times.mean()), std_fit_time=float(times.std()),
                      client_rounds=sum(int(r.get("client_rounds") or 0) for r in runs) or None, state=state,
                      _curve=runs[0].get("_curve", []))
        out.append(result)
    sign = -1.0 if sweep.direction == "max" else 1.0
    order = sorted(range(len(out)), key=lambda i: (not math.isfinite(out[i]["mean_score"]) or
                                                   out[i]["state"] != "complete",
                                                   sign * out[i]["mean_score"] if math.isfinite(out[i]["mean_score"])
                                                   else 0.0, i))
    for rank, i in enumerate(order, start=1):
        out[i]["rank_score"] = rank
    return out


def result_columns(sweep: Sweep) -> tuple[str, ...]:
    splits = tuple(f"split{i}_score" for i in range(max(sweep.cv, 1)))
    return ("point", *splits, "mean_score", "std_score", "rank_score", "mean_fit_time", "std_fit_time",
            "client_rounds", "state")


def write_best(path: Path, results: list[dict], sweep: Sweep, refit: dict | None) -> None:
    """best.json: the best point's parameters and scores, and the refit's run directory and test figures."""
    best = min(results, key=lambda r: r["rank_score"])
    params = {k: v for k, v in best.items() if k in _param_keys(sweep, results)}
    doc = {"select": sweep.select, "direction": sweep.direction, "score": sweep.score, "cv": sweep.cv,
           "search": sweep.search, "point": best["point"], "params": params,
           "mean_score": _clean(best["mean_score"]), "std_score": _clean(best["std_score"]),
           "state": best["state"], "refit": refit}
    path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")


def _refit(comm: MPI.Comm, group: MPI.Comm, sweep: Sweep, rows: list[dict], verbose: bool, resume: bool) -> dict | None:
    """The best point trained again on all the training rows (no validation held out), on rank 0's group; its test
    figures are reported once, in best.json."""
    best = None
    if comm.Get_rank() == 0:
        results = cv_results(rows, sweep)
        top = min(results, key=lambda r: r["rank_score"])
        best = {k: v for k, v in top.items() if k in _param_keys(sweep, rows)} if top["state"] == "complete" else None
    best = comm.bcast(best, root=0)  # once
    outcome = None
    if best is not None and comm.Get_rank() < sweep.ranks_per_job:
        run_dir = sweep.out / "refit"
        done = group.bcast(_finished_summary(run_dir) if resume and group.Get_rank() == 0 else None)
        if done is None:
            settings = {**sweep.fixed, **best, "data.validation_fraction": 0.0, "data.folds": 0, "data.fold": 0,
                        "stop.patience": 0, "stop.metric": "loss"}
            cfg = collectively(group, lambda: api.job(sweep.job, **_settings(settings)))
            done = run_job(group, cfg, run_dir, verbose=False, overwrite=resume).summary
        outcome = {"run_dir": str(run_dir), "test_accuracy": _clean(done.get("final_accuracy")),
                   "test_loss": _clean(done.get("final_test_loss")), "params": best}
        if verbose and group.Get_rank() == 0:
            print(f"refit of point ({', '.join(f'{k}={_show(v)}' for k, v in best.items())}) on all training rows: "
                  f"test accuracy {_fmt(outcome['test_accuracy'])}", flush=True)
    return comm.bcast(outcome, root=0)


def _finished_summary(run_dir: Path) -> dict | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") == "finished" else None


def _claim(out: Path) -> None:
    """Refuse a directory that already holds a sweep: its points would all be refused one by one."""
    if (out / "sweep.csv").exists() or any(out.glob("point-*")):
        raise ConfigError(f"The sweep directory {out} already holds a sweep. Choose another out (in the sweep file "
                          "or with --out), resume it with --resume, or remove it.")


def _check_expected(expected: str, comm: MPI.Comm) -> None:
    if expected.isdigit() and int(expected) != comm.Get_size():
        raise ConfigError(f"This process is rank {comm.Get_rank()} of {comm.Get_size()}, but {expected} tasks were "
                          "started (MPIFL_EXPECT_RANKS): the launcher and the MPI library disagree.")


def _check_fit(sweep: Sweep, size: int) -> None:
    if size % sweep.ranks_per_job:
        raise ConfigError(f"The sweep runs each point on ranks_per_job={sweep.ranks_per_job} ranks, but the job has "
                          f"{size}: start a multiple of {sweep.ranks_per_job} ranks.")


class _Counter:
    """The next run's index, one integer on rank 0 that every group leader takes from atomically."""

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


def _param_keys(sweep: Sweep, rows: list[dict]) -> list[str]:
    if sweep.search == "grid":
        return list(sweep.grid)
    return [dim.key for dim in sweep.space]


def _write_csv(path: Path, rows: list[dict], params: list[str], columns) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["point", *params, *[c for c in columns if c != "point"]]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in fields})


def _cell(value) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys as api.job's keyword names (section__key)."""
    return {k.replace(".", "__"): v for k, v in overrides.items()}


def _corner(space, low: bool) -> dict[str, Any]:
    """A space's lowest or highest point, to check a search's points before any runs."""
    return {d.key: (d.choices[0] if low else d.choices[-1]) if d.choices is not None else d.draw(0.0 if low else 0.999999)
            for d in space}


def _dotted(table: dict, leaves: bool = False) -> dict:
    """Nested TOML tables as dotted keys; with ``leaves``, a table with a range's fields is a value, not a section."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict) and not (leaves and set(value) & {"low", "high", "choices"}):
            flat.update({f"{key}.{name}": v for name, v in _dotted(value, leaves).items()})
        else:
            flat[key] = value
    return flat


def _choice(table: dict, key: str, default: str, options, path) -> str:
    value = table.get(key, default)
    if value not in options:
        raise ConfigError(f"The '{key}' parameter in {path} must be one of {tuple(options)}. Got {value!r}.")
    return value


def _int(table: dict, key: str, default: int, low: int, path) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"The '{key}' parameter in {path} must be an int >= {low}. Got {value!r} instead.")
    return value


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _clean(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def _show(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4f}"

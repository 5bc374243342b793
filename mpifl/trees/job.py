"""A ``model.kind = "gbdt"`` job: boosted histogram trees on a job's data, in either mode.

Every rank holds its share of the rows as the job's mode deals them (mpifl.modes.Mode.tree_rows): in
distributed mode each rank is a worker with its part of the rows; in federated mode rank 0 holds none (only the
test set) and each client rank holds its clients' rows, and each round's trees see the clients that round
samples.  Every rank bins its rows from the merged sketches and takes part in each node's histogram Allreduce, so
every rank grows the same trees and no rank sees another's rows: only sums of histograms travel.  The run
directory holds what every mpifl run holds (config.toml, metrics.jsonl, summary.json) and the model as
model.json (mpifl.trees.model_file).  ``checkpoint.every`` writes model.json's state into checkpoint/ every N
rounds; ``--resume RUN_DIR`` replays its trees on the rows and goes on, the same bytes as an unbroken run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from mpifl import machine
from mpifl.agree import collectively
from mpifl.errors import ConfigError, DataError
from mpifl.job_result import JobResult
from mpifl.metrics import RunWriter, claim_run_dir, default_run_dir
from mpifl.ranks import ROOT, is_root
from mpifl.trees import model_file
from mpifl.trees import privacy as tree_privacy
from mpifl.trees.boosting import Booster, BoostParams, fit
from mpifl.trees.losses import Logistic, Loss, Softmax, SquaredError
from mpifl.trees.pools import AtServer, Allreduced
from mpifl.trees.grower import TreeParams
from mpifl.trees.warm import warm_up

CHECKPOINT = Path("checkpoint") / "model.json"


@dataclass
class TreeRecord:
    """One recorded round (a boosting round, or a forest's member): the test rows' loss and accuracy of the trees
    so far, and the validation rows' (data.validation_fraction or data.folds; None without them)."""

    round: int
    trees: int
    seconds: float  # since training started
    test_loss: float
    accuracy: float | None  # None for squared error
    histogram_bytes: int  # sums (histograms, mostly) the busiest rank sent so far: each Allreduce's or Reduce's buffer
    val_loss: float | None = None
    val_accuracy: float | None = None

    def as_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}

    def json_line(self) -> str:
        return json.dumps(self.as_json(), allow_nan=False)


@dataclass(frozen=True)
class TreeMethod:
    """What a tree kind decides of its job (mpifl.models.gbdt, mpifl.models.forest): its name, the task for the
    job's output link and classes, the fit's settings, and the settings model.json records."""

    name: str
    loss: Callable[[Any, int], Loss]
    params: Callable[[Any, int], BoostParams]  # (cfg, the rows' features)
    recorded: Callable[[Any], dict]
    scaled_by_rounds: bool = False  # its leaves hold their share of a mean over ``rounds`` trees (a forest's)


def boosting_loss(cfg, classes: int) -> Loss:
    return {"linear": SquaredError, "logistic": Logistic}.get(cfg.model.output, lambda: Softmax(classes))()


def boosting_params(cfg, features: int = 0) -> BoostParams:
    m = cfg.model
    return BoostParams(rounds=cfg.rounds, bins=m.bins, subsample=m.subsample, colsample=m.colsample, seed=cfg.seed,
                       tree=TreeParams(max_leaves=m.max_leaves, max_depth=m.max_depth, l2=m.l2, gamma=m.gamma,
                                       min_child_weight=m.min_child_weight, min_child_rows=m.min_child_rows,
                                       lr=cfg.train.lr))


def boosting_recorded(cfg) -> dict:
    return {"rounds": cfg.rounds, "learning_rate": cfg.train.lr, "l2": cfg.model.l2, "seed": cfg.seed,
            **{key: getattr(cfg.model, key) for key in ("max_leaves", "max_depth", "bins", "min_child_weight",
                                                        "min_child_rows", "gamma", "subsample", "colsample")}}


BOOSTING = TreeMethod("gbdt", boosting_loss, boosting_params, boosting_recorded)


def run_tree_job(comm: MPI.Comm, cfg, mode, source, out_dir: Path | None, verbose: bool, resume: bool,
                 overwrite: bool, write: bool, method: TreeMethod = BOOSTING) -> JobResult:
    """Train the job's trees (``method``: boosted, or a forest) on ``comm`` from the data ``source``, this rank's
    rows as the job's ``mode`` deals them (mpifl.modes: every rank a worker, or a server with no rows and client
    ranks); every rank returns the same trees.  With ``write`` False nothing is written."""
    started = time.perf_counter()
    check_settings(cfg)
    mode.check_ranks(comm)
    compile_seconds = comm.allreduce(warm_up(cfg.model.bins > 255), op=MPI.MAX)
    load_started = time.perf_counter()
    part = collectively(comm, lambda: _rows(mode, source, comm))
    load_seconds = comm.allreduce(time.perf_counter() - load_started, op=MPI.MAX)
    run_dir = _claim(comm, cfg, out_dir, resume, overwrite) if write else None
    start = collectively(comm, lambda: _resume_from(run_dir / CHECKPOINT, cfg, method)) if resume else None
    loss, params = method.loss(cfg, source.shape().n_classes), method.params(cfg, source.shape().n_features)
    private = tree_privacy.settle(cfg, loss.classes_out)
    pool = Allreduced(comm) if part.owner is None else AtServer(comm, _masks(comm, cfg), private)
    progress = _Progress(comm, cfg, run_dir, part.test, part.val, loss, pool, verbose)
    if start is not None:
        progress.test_scores.add(start, 0)
    progress.say(f"mpifl: {method.name}, {cfg.mode}, {comm.Get_size()} ranks, {params.rounds} rounds of {loss.classes_out} "
                 f"tree(s) of {params.tree.max_leaves if params.tree.max_leaves < 2**31 - 1 else 'any number of'} leaves, {params.bins} bins; kernels compiled or loaded in "
                 f"{compile_seconds:.2f} s")
    taking_part = None
    if part.owner is not None:  # federated: the clients each round samples
        def taking_part(rnd: int) -> np.ndarray:
            return mode.sampled_clients(rnd, part.n_clients)[part.owner]
    told: dict = {}
    booster = fit(part.X, part.y, loss, params, pool, part.places, start, progress, taking_part, told)
    fit_seconds = comm.allreduce(time.perf_counter() - progress.started, op=MPI.MAX)
    grown = (params.rounds - (len(start.trees) if start is not None else 0)) * loss.classes_out
    last = progress.records[-1] if progress.records else None
    summary = {
        "mode": cfg.mode, "model": method.name, "task": loss.name, "ranks": comm.Get_size(),
        "rounds": params.rounds, "trees": params.rounds * loss.classes_out,
        "mean_leaves": float(np.mean([t.leaves for r in booster.trees for t in r])) if booster.trees else None,
        "compile_seconds": compile_seconds, "load_seconds": load_seconds, "train_seconds": fit_seconds,
        "seconds_per_tree": fit_seconds / max(grown, 1),
        "histogram_bytes_per_tree": comm.allreduce(pool.sent, op=MPI.MAX) / max(grown, 1),  # the busiest rank's
        "final_test_loss": float(last.test_loss) if last else None,
        "final_accuracy": float(last.accuracy) if last and last.accuracy is not None else None,
        "final_val_loss": last.val_loss if last else None, "final_val_accuracy": last.val_accuracy if last else None,
        "resumed_from_round": len(start.trees) if start is not None else None,
        # the large nodes' histogram kernel rank 0 timed and chose (None: it holds no rows), and on what CPU
        "histogram_kernel": told.get("histogram_kernel"), "cpu": machine.cpu_model(),
        "privacy": None if private is None else {
            "noise_multiplier": private.noise_multiplier, "clip": private.clip, "delta": private.delta,
            "releases": private.releases, "epsilon": private.epsilon()},
        "wall_seconds": time.perf_counter() - started,
    }
    if progress.writer is not None:
        progress.writer.close()
        model_file.write(run_dir / "model.json", booster, method.recorded(cfg))
        progress.writer.write_summary(summary)
    progress.say(f"done: {summary['trees']} trees in {fit_seconds:.2f} s ({summary['seconds_per_tree'] * 1e3:.1f} ms "
                 f"a tree)" + (f"; {run_dir}" if run_dir is not None else ""))
    return JobResult(np.empty(0), progress.records, summary, run_dir, booster)


class _Progress:
    """After each round: the test rows' figures on recorded rounds (metrics.jsonl), and the checkpoint."""

    def __init__(self, comm: MPI.Comm, cfg, run_dir: Path | None, test, val, loss: Loss, pool: Allreduced,
                 verbose: bool):
        self.comm, self.cfg, self.run_dir, self.loss, self.pool, self.verbose = comm, cfg, run_dir, loss, pool, verbose
        self.writer = RunWriter(run_dir, cfg.as_nested()) if run_dir is not None and is_root(comm) else None
        self.test_scores = _Scores(test, loss)
        self.val_scores = _Scores(val, loss) if comm.allreduce(val is not None, op=MPI.LOR) else None
        self.records: list[TreeRecord] = []
        self.started = time.perf_counter()

    def __call__(self, rnd: int, booster: Booster) -> None:
        self.test_scores.add(booster, rnd - 1)
        if self.val_scores is not None:
            self.val_scores.add(booster, rnd - 1)
        if rnd == self.cfg.rounds or rnd % self.cfg.log_every == 0:
            test_loss, accuracy = self.test_scores.figures(self.comm)
            val_loss, val_accuracy = self.val_scores.figures(self.comm) if self.val_scores else (None, None)
            sent = self.comm.allreduce(self.pool.sent, op=MPI.MAX)  # the busiest rank's (a client's, federated)
            record = TreeRecord(rnd, rnd * self.loss.classes_out, time.perf_counter() - self.started, test_loss,
                                accuracy, sent, val_loss, val_accuracy)
            self.records.append(record)
            if self.writer is not None:
                self.writer.record(record)
            self.say(f"round {rnd:>5}  test loss {test_loss:.4f}"
                     + (f"  accuracy {accuracy:.4f}" if accuracy is not None else "")
                     + (f"  val loss {val_loss:.4f}" if val_loss is not None else "")
                     + (f"  val accuracy {val_accuracy:.4f}" if val_accuracy is not None else ""))
        every = self.cfg.checkpoint.every
        if self.run_dir is not None and every and rnd % every == 0 and is_root(self.comm):
            (self.run_dir / CHECKPOINT).parent.mkdir(exist_ok=True)
            model_file.write(self.run_dir / CHECKPOINT, booster, {"round": rnd, "rounds": self.cfg.rounds})

    def say(self, text: str) -> None:
        if self.verbose and is_root(self.comm):
            print(text, flush=True)


def _masks(comm: MPI.Comm, cfg):
    """Federated with secagg.enabled: each round's pads for this rank's histograms (mpifl.trees.secure)."""
    if not cfg.secagg.enabled:
        return None
    from mpifl.trees.secure import agree_round

    return lambda rnd: agree_round(comm, rnd, cfg.seed, cfg.secagg.plus, cfg.secagg.neighbours)


def check_settings(cfg) -> None:
    """Secure-aggregation settings a tree job cannot honour, the same on every rank (the stages it applies are
    the kind's ModelKind.stages_taken, checked with the config)."""
    if cfg.secagg.enabled and cfg.secagg.dropout:
        raise ConfigError("A tree job's clients answer every histogram of their round: secagg.dropout must be 0 "
                          "(mpifl.trees.secure).")
    if cfg.secagg.enabled and cfg.secagg.bits != 64:
        raise ConfigError("A tree job masks 64-bit histogram sums: secagg.bits must be 64.")


def _rows(mode, source, comm: MPI.Comm):
    part = mode.tree_rows(comm, source)
    if sparse(part.X):
        raise DataError("Trees take dense rows; this data source gives sparse (CSR) rows.")
    return part


def sparse(X) -> bool:
    return hasattr(X, "indptr")


def _claim(comm: MPI.Comm, cfg, out_dir: Path | None, resume: bool, overwrite: bool) -> Path:
    if out_dir is None:
        out_dir = comm.bcast(default_run_dir(cfg.mode) if is_root(comm) else None, root=ROOT)
    run_dir = Path(out_dir)
    collectively(comm, lambda: claim_run_dir(run_dir, resume, overwrite) if is_root(comm) else None)
    if resume:
        collectively(comm, lambda: _resumable(run_dir))
    return run_dir


def _resume_from(path: Path, cfg, method: TreeMethod):
    """The checkpoint's trees; a forest's only for the rounds it was grown for (each leaf holds 1/rounds of its
    mean, so a forest resumed for more trees would weigh its old and new trees apart)."""
    start = model_file.read(path)
    if method.scaled_by_rounds:
        grown_for = json.loads(path.read_text())["params"].get("rounds")
        if grown_for != cfg.rounds:
            raise ConfigError(f"{path} holds a forest grown for rounds = {grown_for}; resume it with the same "
                              f"rounds (got {cfg.rounds}): its leaves hold their share of a mean over that many "
                              "trees.")
    return start


def _resumable(run_dir: Path) -> None:
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"{run_dir / CHECKPOINT} does not exist: nothing to resume (set checkpoint.every).")


class _Scores:
    """The test rows' margins, kept up to date round by round."""

    def __init__(self, rows, loss: Loss):
        """``rows``: this rank's rows to score (a Shard), or None where it holds none."""
        self.X = np.ascontiguousarray(rows.X, dtype=np.float64) if rows is not None else np.empty((0, 0))
        self.y = rows.y if rows is not None else np.empty(0)
        self.loss, self.scores = loss, None

    def add(self, booster: Booster, from_round: int) -> None:
        if self.scores is None:
            self.scores = np.tile(booster.base, (self.X.shape[0], 1))
        if not self.X.shape[0]:
            return
        part = Booster(booster.edges, booster.n_edges, np.zeros_like(booster.base), booster.loss,
                       booster.trees[from_round:])
        self.scores += part.raw_scores(self.X)

    def figures(self, comm: MPI.Comm) -> tuple[float, float | None]:
        """(mean loss, accuracy or None) over every rank's rows."""
        loss_sum, correct = self.loss.figures(self.scores, self.y) if self.y.size else (0.0, 0.0)
        totals = np.array([loss_sum, correct, float(len(self.y))])
        comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
        mean = float(totals[0] / totals[2]) if totals[2] else math.nan
        accuracy = None if not self.loss.classifies else (float(totals[1] / totals[2]) if totals[2] else math.nan)
        return mean, accuracy

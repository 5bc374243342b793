"""Model selection on real ranks: federated evaluation against a serial computation, early stopping and
model_best.npz in both modes, sweeps with cv whose cv_results.csv matches the separate runs, Optuna's trials
repeated from their seed, a sweep resumed after a kill, and selections the test set's labels cannot move."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI
from naive import correct, loss_and_grad_sum
from rank_counts import on_first_ranks

import mpifl
from mpifl import cli
from mpifl.data.builtin_sources import Digits
from mpifl.data.catalog import resolve
from mpifl.data.shards import Shard, with_client_tests
from mpifl.data.validation import federated_split
from mpifl.strategies.sampling import evaluation_sample

COMM = MPI.COMM_WORLD
REPO = Path(__file__).resolve().parents[1]
DISTRIBUTED = dict(mode="distributed", data__name="synthetic", data__n_samples=3000, data__n_features=8,
                   model__kind="logistic", train__batch_size=0, train__lr=0.5, rounds=60, log_every=1)


class ShuffledTestLabels(Digits):
    """The digits with the test rows' labels permuted: what a selection that ignores the test set cannot see."""

    name = "shuffled_test_digits"

    def _shard(self, X, y, rows, name):
        got = super()._shard(X, y, rows, name)
        if "test" in name:
            return Shard(got.X, np.random.default_rng(1).permutation(got.y))
        return got


def shared_dir(tmp_path: Path) -> Path:
    return COMM.bcast(tmp_path if COMM.rank == 0 else None)


@pytest.mark.mpi(min_size=2)
def test_federated_evaluation_equals_a_serial_computation_on_the_sampled_clients_validation_rows():
    def test(comm):
        job = dict(rounds=3, data__clients=6, data__validation_fraction=0.3, evaluate__fraction=0.5, seed=4)
        result = mpifl.run(None, comm, **job)
        cfg = mpifl.job(None, **job)
        source = resolve(cfg)
        clients = with_client_tests(source.clients(range(6), 6), range(6), 0.0, 4)
        clients = federated_split(clients, range(6), 6, 4, 0.3, 0, 0)
        for rnd in (0, 3):
            theta = cfg_initial(cfg, source) if rnd == 0 else result.model
            sampled = evaluation_sample(4, rnd, np.ones(6, dtype=bool), 0.5)
            X = np.vstack([c.validation.X for c, s in zip(clients, sampled) if s])
            y = np.concatenate([c.validation.y for c, s in zip(clients, sampled) if s])
            row = result.history[rnd]
            assert row["val_clients"] == 3
            assert row["val_loss"] == pytest.approx(loss_and_grad_sum("softmax", X, y, theta)[0] / y.size, rel=1e-9)
            assert row["val_accuracy"] == pytest.approx(correct("softmax", X, y, theta) / y.size, rel=1e-12)
    on_first_ranks(COMM, 2, test)
    if COMM.size >= 3:  # the same figures with the clients on two client ranks
        on_first_ranks(COMM, 3, test)


def cfg_initial(cfg, source):
    from mpifl.data.catalog import model_spec

    return model_spec(cfg, source).initial(cfg.seed)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_early_stopping_ends_the_run_and_model_best_is_the_best_rounds_model(tmp_path, mode):
    where = shared_dir(tmp_path)
    job = dict(DISTRIBUTED) if mode == "distributed" else dict(rounds=40, data__clients=6, train__lr=2.0)
    job.update(data__validation_fraction=0.2, stop__patience=2, stop__min_delta=0.002 if mode == "federated" else 0.005)

    def test(comm):
        result = mpifl.run(None, comm, out=where / mode, **job)
        s = result.summary
        assert s["stopped_early"] and s["rounds_run"] == s["stopped_after_round"] < job["rounds"]
        assert result.history[-1]["round"] == s["stopped_after_round"]
        best_round, best = 0, result.history[0]["val_loss"]  # an improvement is a drop of more than min_delta
        for row in result.history[1:]:
            if row["val_loss"] < best - job["stop__min_delta"]:
                best_round, best = row["round"], row["val_loss"]
        assert s["best_round"] == best_round and s["best_value"] == best
        assert s["best_test_accuracy"] == result.history[s["best_round"]]["accuracy"]
        assert "best_accuracy" not in s
        alone = mpifl.run(None, comm, **{**job, "rounds": s["best_round"], "stop__patience": 0})
        with np.load(where / mode / "model_best.npz") as best:
            assert best["theta"].tobytes() == alone.model.tobytes() and int(best["round"]) == s["best_round"]
        with np.load(where / mode / "model.npz") as final:  # the model the last record judged
            again = mpifl.run(None, comm, **{**job, "rounds": s["stopped_after_round"], "stop__patience": 0})
            assert final["theta"].tobytes() == again.model.tobytes()
    on_first_ranks(COMM, 2, test)


def sweep_file(where: Path, text: str) -> Path:
    path = where / "sweep.toml"
    if COMM.rank == 0:
        path.write_text(text)
    COMM.Barrier()
    return path


CV_SWEEP = '''
ranks_per_job = 2
out = "{out}"
select = "val_accuracy"
cv = 3
refit = true
[grid]
"train.lr" = [0.05, 0.5]
[set]
rounds = 4
"data.clients" = 6
'''


@pytest.mark.mpi(min_size=4)
def test_a_cv_sweep_matches_its_separate_runs_and_refits_the_best_point(tmp_path):
    where = shared_dir(tmp_path)
    path = sweep_file(where, CV_SWEEP.format(out=where / "out"))

    def test(comm):
        assert cli.main(comm, ["sweep", str(path), "--quiet"]) == 0
        with open(where / "out" / "cv_results.csv") as table:
            results = list(csv.DictReader(table))
        best = json.loads((where / "out" / "best.json").read_text())
        pair = comm.Split(comm.rank // 2, comm.rank)
        means = []
        for row in results:
            lr = float(row["train.lr"])
            scores = []
            for fold in range(3):
                alone = mpifl.run(None, pair, rounds=4, data__clients=6, train__lr=lr, data__folds=3, data__fold=fold,
                                  stop__metric="val_accuracy")
                scores.append(alone.history[-1]["val_accuracy"])
                with np.load(where / "out" / f"point-{int(row['point']):04d}" / f"fold-{fold}" / "model.npz") as m:
                    assert m["theta"].tobytes() == alone.model.tobytes()
                assert float(row[f"split{fold}_score"]) == scores[-1]
            assert float(row["mean_score"]) == pytest.approx(np.mean(scores), abs=1e-15)
            means.append(np.mean(scores))
        pair.Free()
        assert best["point"] == int(np.argmax(means)) and best["cv"] == 3
        assert best["refit"]["run_dir"].endswith("refit")
        refit = json.loads((Path(best["refit"]["run_dir"]) / "summary.json").read_text())
        assert refit["final_accuracy"] == best["refit"]["test_accuracy"] and refit["final_val_loss"] is None
    on_first_ranks(COMM, 4, test)


OPTUNA_SWEEP = '''
ranks_per_job = 1
out = "{out}"
select = "val_loss"
score = "best"
search = "optuna"
trials = 6
prune = "median"
seed = 5
[space]
"train.lr" = {{low = 0.01, high = 5.0, log = true}}
"model.l2" = {{low = 1e-5, high = 1e-1, log = true}}
[set]
mode = "distributed"
rounds = 8
log_every = 1
"data.name" = "synthetic"
"data.n_samples" = 2000
"data.n_features" = 8
"model.kind" = "logistic"
"train.batch_size" = 0
"data.validation_fraction" = 0.25
'''


@pytest.mark.mpi(min_size=2)
def test_optunas_ask_and_tell_gives_the_same_trials_in_the_same_order_from_its_seed(tmp_path):
    where = shared_dir(tmp_path)

    def test(comm):
        tables = []
        for name in ("a", "b"):
            path = where / "sweep.toml"
            if comm.rank == 0:
                path.write_text(OPTUNA_SWEEP.format(out=where / name))
            comm.Barrier()
            assert cli.main(comm, ["sweep", str(path), "--quiet"]) == 0
            with open(where / name / "cv_results.csv") as table:
                tables.append([{k: row[k] for k in ("point", "train.lr", "model.l2", "mean_score", "state")}
                               for row in csv.DictReader(table)])
        assert tables[0] == tables[1] and len(tables[0]) == 6
        assert len({row["train.lr"] for row in tables[0]}) == 6
    on_first_ranks(COMM, 2, test)


@pytest.mark.mpi(min_size=2)
def test_a_sweep_resumed_after_a_kill_reruns_only_the_unfinished_runs_and_gives_the_same_results(tmp_path):
    where = shared_dir(tmp_path)
    text = CV_SWEEP.replace("ranks_per_job = 2", "ranks_per_job = 1").replace('"data.clients" = 6', '"data.clients" = 6\nmode = "distributed"\n"data.name" = "synthetic"\n"data.n_samples" = 1500\n"model.kind" = "logistic"')

    def test(comm):
        path = where / "sweep.toml"
        if comm.rank == 0:
            path.write_text(text.format(out=where / "out"))
        comm.Barrier()
        assert cli.main(comm, ["sweep", str(path), "--quiet"]) == 0
        out = where / "out"
        first = (out / "cv_results.csv").read_text()
        kept = out / "point-0000" / "fold-0" / "model.npz"
        stamp = os.stat(kept).st_mtime_ns
        if comm.rank == 0:  # a kill mid-way: one run without its summary, one never started, no tables, no refit
            (out / "point-0001" / "fold-2" / "summary.json").unlink()
            shutil.rmtree(out / "point-0001" / "fold-1")
            for name in ("sweep.csv", "cv_results.csv", "best.json"):
                (out / name).unlink()
            shutil.rmtree(out / "refit")
        comm.Barrier()
        assert cli.main(comm, ["sweep", str(path), "--quiet", "--resume"]) == 0
        assert os.stat(kept).st_mtime_ns == stamp  # a finished run is read back, not rerun
        again = (out / "cv_results.csv").read_text()
        strip = lambda text: [line.split(",")[:7] for line in text.splitlines()]  # noqa: E731 (scores, not times)
        assert strip(again) == strip(first)
        assert (out / "point-0001" / "fold-1" / "summary.json").exists()
    on_first_ranks(COMM, 2, test)


@pytest.mark.mpi(min_size=2)
def test_permuting_the_test_labels_changes_no_selection_no_best_json_and_no_model_best(tmp_path):
    where = shared_dir(tmp_path)
    base = 'ranks_per_job = 2\nout = "{out}"\nselect = "val_loss"\nscore = "best"\n[grid]\n"train.lr" = [0.1, 1.0]\n' \
           '[set]\nrounds = 6\n"data.clients" = 4\n"data.validation_fraction" = 0.25\n"stop.patience" = 2\n' \
           '"data.name" = "{source}"\n'

    def test(comm):
        bests, models = [], []
        for name, source in (("plain", "digits"), ("shuffled", f"{__name__}:ShuffledTestLabels")):
            path = where / f"{name}.toml"
            if comm.rank == 0:
                path.write_text(base.format(out=where / name, source=source))
            comm.Barrier()
            assert cli.main(comm, ["sweep", str(path), "--quiet"]) == 0
            best = json.loads((where / name / "best.json").read_text())
            bests.append({k: best[k] for k in ("point", "params", "mean_score", "std_score")})
            with np.load(where / name / f"point-{best['point']:04d}" / "model_best.npz") as m:
                models.append(m["theta"].tobytes())
            summary = json.loads((where / name / "point-0000" / "summary.json").read_text())
            bests[-1]["best_test_accuracy"] = summary["best_test_accuracy"]
        assert bests[0]["best_test_accuracy"] != bests[1]["best_test_accuracy"]  # the test labels did change
        for b in bests:
            b.pop("best_test_accuracy")
        assert bests[0] == bests[1] and models[0] == models[1]
    on_first_ranks(COMM, 2, test)


@pytest.mark.mpi(min_size=2)
def test_a_partitions_own_validation_rows_are_what_its_clients_evaluate(tmp_path):
    where = shared_dir(tmp_path)
    if COMM.rank == 0:
        from mpifl.data.partition_cli import main

        assert main(["digits", "--clients", "3", "--validation-fraction", "0.3", "--out", str(where / "p")]) == 0
    COMM.Barrier()

    def test(comm):
        result = mpifl.run(None, comm, rounds=2, data__path=str(where / "p"))
        manifest = json.loads((where / "p" / "manifest.json").read_text())
        assert result.history[0]["val_clients"] == 3
        assert result.history[-1]["val_loss"] is not None
        rows = sum(c["validation"]["rows"] for c in manifest["clients"])
        assert result.history[0]["val_accuracy"] * rows == pytest.approx(round(result.history[0]["val_accuracy"] * rows))
    on_first_ranks(COMM, 2, test)

"""A whole job on COMM_SELF, in plain pytest: the same code path the ranks run."""

from __future__ import annotations

import json

import naive
import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config
from mpifl.data.catalog import model_spec, worker_shards
from mpifl.errors import MpiflError
from mpifl.runner import run_job


def test_distributed_gd_on_one_rank_equals_numpy_gd(tmp_path):
    cfg = config.load(overrides=[
        "mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=0", "rounds=5",
        "model.l2=0.01", "log_every=5",
    ])
    result = run_job(MPI.COMM_SELF, cfg, tmp_path / "run", verbose=False)
    train, _ = worker_shards(cfg, 0, 1)
    expected = naive.gradient_descent("softmax", train.X, train.y, model_spec(cfg).zeros(), 5, 0.5, 0.01)
    assert np.max(np.abs(result.theta - expected)) < 1e-10
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ranks"] == 1 and summary["final_loss"] == pytest.approx(result.records[-1].loss)
    assert naive.objective("softmax", train.X, train.y, result.theta, 0.01) == pytest.approx(summary["final_loss"], rel=1e-12)


def test_linear_regression_reports_no_accuracy(tmp_path):
    cfg = config.load(overrides=[
        "mode=distributed", "data.name=synthetic", "model.kind=linear", "data.partition=iid", "rounds=3",
    ])
    result = run_job(MPI.COMM_SELF, cfg, tmp_path / "run", verbose=False)
    assert result.summary["final_accuracy"] is None
    assert result.records[-1].loss < result.records[0].loss


def test_federated_on_comm_self_is_refused_before_any_file_is_written(tmp_path):
    with pytest.raises(MpiflError, match="at least 2 ranks") as err:
        run_job(MPI.COMM_SELF, config.load(), tmp_path / "run", verbose=False)
    assert err.value.collective and not (tmp_path / "run").exists()


def test_dirichlet_needs_labels(tmp_path):
    cfg = config.load(overrides=["mode=distributed", "data.name=synthetic", "model.kind=linear"])
    with pytest.raises(MpiflError, match="needs class labels"):
        run_job(MPI.COMM_SELF, cfg, tmp_path / "run", verbose=False)


def test_default_run_dirs_of_the_same_second_do_not_collide(tmp_path, monkeypatch):
    from mpifl import metrics

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(metrics.time, "strftime", lambda _fmt: "20261126-080000")
    first = metrics.default_run_dir("federated")
    first.mkdir(parents=True)
    second = metrics.default_run_dir("federated")
    second.mkdir()
    assert (first.name, second.name, metrics.default_run_dir("federated").name) == (
        "federated-20261126-080000", "federated-20261126-080000-2", "federated-20261126-080000-3")


def test_overwrite_deletes_the_old_run_files_and_nothing_else(tmp_path):
    from mpifl.metrics import claim_run_dir

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(MpiflError, match="already holds a run \\(summary.json, checkpoint\\)"):
        claim_run_dir(tmp_path, resume=False, overwrite=False)
    claim_run_dir(tmp_path, resume=True, overwrite=False)  # resuming continues the run in place
    assert (tmp_path / "summary.json").exists()
    claim_run_dir(tmp_path, resume=False, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

"""Jobs on partitions the partition tool wrote, in-process on real ranks (mpiexec -n 2, -n 4): the FedAvg 2NN job
on an MNIST-like IDX partition, and an MLP on a LIBSVM partition kept sparse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI
from serial_tools import mpifl_command
from test_idx import mnist_like

import mpifl

COMM = MPI.COMM_WORLD


def on_rank_0(step) -> None:
    """Write the inputs on rank 0 (the partition tool is serial), then let every rank read them; a failure there
    fails the test on every rank instead of leaving the others waiting."""
    error = None
    if COMM.rank == 0:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - reported on every rank below
            error = f"rank 0 could not write the inputs: {exc!r}"
    error = COMM.bcast(error)
    assert error is None, error


@pytest.mark.mpi(min_size=2)
def test_the_fedavg_2nn_job_trains_on_an_mnist_like_partition(tmp_path):
    where = COMM.bcast(tmp_path if COMM.rank == 0 else None)

    def write():
        train, _, _ = mnist_like(where, "train", 400, True, 0)
        test, _, _ = mnist_like(where, "t10k", 100, True, 1)
        made = mpifl_command("partition", train, "--test-source", test, "--clients", 20, "--method", "shards",
                             "--dtype", "float32", "--out", where / "mnist-shards")
        assert made.returncode == 0, made.stderr
    on_rank_0(write)
    job = Path(__file__).resolve().parents[1] / "jobs" / "fedavg_mnist_2nn.toml"
    result = mpifl.run(job, COMM, data__path=str(where / "mnist-shards"), rounds=3, model__hidden=[20, 20])
    assert result.summary["rounds_run"] == 3 and result.summary["status"] == "finished"
    assert [h["participants"] for h in result.history[1:]] == [2, 2, 2]  # C = 0.1 of 20 clients


@pytest.mark.mpi(min_size=2)
def test_an_mlp_trains_on_a_libsvm_partition_kept_sparse(tmp_path):
    where = COMM.bcast(tmp_path if COMM.rank == 0 else None)

    def write():
        from sklearn.datasets import dump_svmlight_file

        rng = np.random.default_rng(0)
        X = rng.standard_normal((300, 50)) * (rng.random((300, 50)) < 0.1)
        y = (X[:, :5].sum(axis=1) > 0).astype(int) + 2 * (X[:, 5:10].sum(axis=1) > 0).astype(int)
        dump_svmlight_file(X, y, str(where / "data.svm"))
        made = mpifl_command("partition", where / "data.svm", "--clients", 4, "--method", "iid", "--out", where / "p")
        assert made.returncode == 0, made.stderr
    on_rank_0(write)
    result = mpifl.run(None, COMM, data__path=str(where / "p"), model__kind="mlp", model__hidden=[16], rounds=15,
                       train__lr=0.2)
    assert json.loads((where / "p" / "manifest.json").read_text())["sparse"] is True
    assert result.history[-1]["loss"] < 0.8 * result.history[0]["loss"]

"""The MLP in both modes: parallel equals serial, every strategy runs, repeats are bitwise (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config
from mpifl.data.catalog import client_shard, model_spec, worker_shards
from mpifl.runner import run_job
from mpifl.strategies import STRATEGIES

COMM = MPI.COMM_WORLD


def job(*extra):
    return config.load(overrides=[
        "data.name=synthetic", "data.n_samples=401", "data.n_features=6", "data.n_classes=3", "data.noise=0.3",
        "model.kind=mlp", "model.hidden=[8, 5]", "model.activation=tanh", "model.output=softmax",
        "model.l2=0.01", "rounds=6", "log_every=3", "train.lr=0.3", *extra,
    ])


def run(cfg, tmp_path, name="run"):
    out = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    return run_job(COMM, cfg, out / name, verbose=False)


def serial_gd(cfg, X, y):
    """Full-batch gradient descent on the union of the shards, from the model's seeded start."""
    spec = model_spec(cfg)
    theta = spec.initial(cfg["seed"]).astype(np.float64)
    penalised = spec.penalised()
    for _ in range(cfg["rounds"]):
        _, grad = naive.mlp_loss_and_grad_sum(spec.layout, spec.activation, spec.link, X, y, theta)
        theta = theta - cfg["train.lr"] * (grad / len(y) + cfg["model.l2"] * theta * penalised)
    return theta


@pytest.mark.mpi(min_size=2)
def test_distributed_full_batch_gd_equals_serial_gd_on_the_union(tmp_path):
    cfg = job("mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=0",
              "data.partition=dirichlet")
    result = run(cfg, tmp_path)
    shards = [worker_shards(cfg, r, COMM.size)[0] for r in range(COMM.size)]
    X, y = np.concatenate([s.X for s in shards]), np.concatenate([s.y for s in shards])
    expected = serial_gd(cfg, X, y)
    assert np.max(np.abs(result.theta - expected)) / np.max(np.abs(expected)) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_fedsgd_equals_distributed_gradient_descent(tmp_path):
    cfg = job("mode=federated", "train.batch_size=0", "train.epochs=1", "data.partition=dirichlet")
    fed = run(cfg, tmp_path, "fed")
    clients = [client_shard(cfg, k, COMM.size - 1) for k in range(COMM.size - 1)]
    X, y = np.concatenate([c.X for c in clients]), np.concatenate([c.y for c in clients])
    expected = serial_gd(cfg, X, y)
    assert np.max(np.abs(fed.theta - expected)) / np.max(np.abs(expected)) < 1e-10


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_the_mlp(strategy, tmp_path):
    cls = STRATEGIES[strategy]
    asynchronous = ["server.mode=async", "server.concurrency=1", *(["server.buffer=1"] if "buffer" in cls.parameters
                                                                  else [])] if cls.asynchronous else []
    heads = ["data.client_test_fraction=0.25"] if cls.client.keeps_head else []
    cfg = job("mode=federated", f"server.strategy={strategy}", "rounds=8", "train.epochs=2", "train.lr=0.1",
              *asynchronous, *heads)
    result = run(cfg, tmp_path)
    assert result.theta.shape == (model_spec(cfg).size,) and np.isfinite(result.theta).all()
    if heads:  # no client trains the server's head: the clients' own models are what improves
        personal = [r.personal["mean"] for r in result.records if r.personal]
        assert personal[-1] > personal[0], personal
    else:
        losses = [r.loss for r in result.records]
        assert losses[-1] < losses[0], losses


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_the_same_config_gives_a_bitwise_identical_mlp(mode, tmp_path):
    cfg = job(f"mode={mode}", "train.momentum=0.9", "model.dtype=float32")
    first, second = run(cfg, tmp_path, "first"), run(cfg, tmp_path, "second")
    assert first.theta.dtype == np.float32 and first.theta.tobytes() == second.theta.tobytes()

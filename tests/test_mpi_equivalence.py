"""Parallel training equals its serial equivalent (run under mpiexec -n 2 and -n 4)."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from mpi4py import MPI

from mpifl import config
from mpifl.data.catalog import client_shard, model_spec, worker_shards
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.metrics import read_client_figures
from mpifl.runner import run_job
from mpifl.strategies.sampling import sample_clients

COMM = MPI.COMM_WORLD

SYNTHETIC = {
    "linear": ["data.n_classes=2"],
    "logistic": ["data.n_classes=2"],
    "softmax": ["data.n_classes=4"],
}


def job(kind, *extra):
    return config.load(
        overrides=[
            # 601 rows and Dirichlet labels give unequal shards, so weighting matters
            "data.name=synthetic", "data.n_samples=601", "data.n_features=5", "data.noise=0.3",
            "data.partition=iid", f"model.kind={kind}", "model.l2=0.01", "rounds=8", "log_every=4",
            *SYNTHETIC[kind], *extra,
        ]
    )


def run(cfg, tmp_path):
    out = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    return run_job(COMM, cfg, out / "run", verbose=False)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("kind", ["linear", "logistic", "softmax"])
def test_distributed_full_batch_gd_equals_serial_gd_on_the_union(kind, tmp_path):
    partition = "data.partition=iid" if kind == "linear" else "data.partition=dirichlet"
    cfg = job(kind, "mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=0", partition)
    result = run(cfg, tmp_path)
    shards = [worker_shards(cfg, r, COMM.size)[0] for r in range(COMM.size)]
    X = np.concatenate([s.X for s in shards])
    y = np.concatenate([s.y for s in shards])
    expected = naive.gradient_descent(kind, X, y, model_spec(cfg).zeros(), cfg["rounds"], cfg["train.lr"], cfg["model.l2"])
    assert rel(result.theta, expected) < 1e-10


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("kind", ["logistic", "softmax"])
def test_fedsgd_equals_distributed_gradient_descent(kind, tmp_path):
    # Dirichlet clients have unequal sizes, so only a sample-weighted mean matches GD.
    cfg = job(kind, "mode=federated", "train.batch_size=0", "train.epochs=1", "data.partition=dirichlet")
    fed = run(cfg, tmp_path / "fed")
    clients = [client_shard(cfg, k, COMM.size - 1) for k in range(COMM.size - 1)]
    if COMM.size > 2:
        assert len({c.n for c in clients}) > 1
    X = np.concatenate([c.X for c in clients])
    y = np.concatenate([c.y for c in clients])
    serial = naive.gradient_descent(kind, X, y, model_spec(cfg).zeros(), cfg["rounds"], cfg["train.lr"], cfg["model.l2"])
    dist = run(job(kind, "mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=0"), tmp_path / "dist")
    assert rel(fed.theta, serial) < 1e-10
    assert rel(fed.theta, dist.theta) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_minibatch_gradient_averaging_equals_serial_sgd_over_the_union(tmp_path):
    """With equal shards, each global step is one mean gradient over p local mini-batches."""
    cfg = job("logistic", "mode=distributed", "train.algorithm=gradient_averaging", "train.batch_size=8",
              "train.momentum=0.5", "data.test_fraction=0.0", f"data.n_samples={48 * COMM.size}", "rounds=2")
    result = run(cfg, tmp_path)
    p = COMM.size
    shards = [worker_shards(cfg, r, p)[0] for r in range(p)]
    spec = model_spec(cfg)
    trainers = [LocalTrainer(s, ModelKernels(spec), LocalSettings.from_config(cfg), cfg["seed"], r) for r, s in enumerate(shards)]
    theta = spec.zeros().astype(np.float64)
    velocity = np.zeros_like(theta)
    for rnd in range(1, cfg["rounds"] + 1):
        orders = [t.order(rnd, 0) for t in trainers]
        for step in range(48 // 8):
            Xb = np.concatenate([s.X[o[step * 8:(step + 1) * 8]] for s, o in zip(shards, orders)])
            yb = np.concatenate([s.y[o[step * 8:(step + 1) * 8]] for s, o in zip(shards, orders)])
            velocity = 0.5 * velocity + naive.mean_grad("logistic", Xb, yb, theta, cfg["model.l2"])
            theta = theta - cfg["train.lr"] * velocity
    assert rel(result.theta, theta) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_local_sgd_equals_serial_simulation(tmp_path):
    cfg = job("softmax", "mode=distributed", "train.algorithm=local_sgd", "train.batch_size=16",
              "train.epochs=2", "train.momentum=0.9", "train.lr=0.1", "data.partition=dirichlet")
    result = run(cfg, tmp_path)
    p = COMM.size
    spec = model_spec(cfg)
    shards = [worker_shards(cfg, r, p)[0] for r in range(p)]
    trainers = [LocalTrainer(s, ModelKernels(spec), LocalSettings.from_config(cfg), cfg["seed"], r) for r, s in enumerate(shards)]
    theta = spec.zeros()
    for rnd in range(1, cfg["rounds"] + 1):
        local = []
        for t in trainers:
            mine = theta.copy()
            t.train(mine, rnd)
            local.append(mine * t.shard.n)
        theta = np.sum(local, axis=0) / sum(s.n for s in shards)
    assert rel(result.theta, theta) < 1e-10


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("per_rank", [1, 3])
def test_federated_partial_participation_equals_serial_simulation(per_rank, tmp_path):
    """FedAvg with sampling and per-client momentum; with per_rank 3, each rank hosts 3 clients."""
    k = per_rank * (COMM.size - 1)
    cfg = config.load(overrides=["rounds=6", "server.fraction=0.5", "train.momentum=0.5", "train.epochs=2",
                                 "log_every=3", f"data.clients={k}"])
    result = run(cfg, tmp_path)
    spec = model_spec(cfg)
    trainers = [LocalTrainer(client_shard(cfg, c, k), ModelKernels(spec), LocalSettings.from_config(cfg), cfg["seed"], c) for c in range(k)]
    theta = spec.zeros()
    for rnd in range(1, cfg["rounds"] + 1):
        mask = sample_clients(cfg["seed"], rnd, k, cfg["server.fraction"])
        updates = np.empty((k, spec.size))
        weights = np.zeros(k)
        for c, t in enumerate(trainers):
            mine = theta.copy()
            if mask[c]:
                t.train(mine, rnd)
                weights[c] = t.shard.n
            updates[c] = mine.ravel()
        # FedAvg written out independently of mpifl.strategies
        theta = ((weights @ updates) / weights.sum()).reshape(spec.shape)
    assert rel(result.theta, theta) < 1e-12


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_same_config_same_ranks_gives_bitwise_identical_model(mode, tmp_path):
    cfg = config.load(overrides=[f"mode={mode}", "rounds=5", "train.momentum=0.9"])
    first = run(cfg, tmp_path / "a")
    second = run(cfg, tmp_path / "b")
    assert np.array_equal(first.theta, second.theta)
    if COMM.rank == 0:
        assert (first.run_dir / "model.npz").read_bytes() == (second.run_dir / "model.npz").read_bytes()


@pytest.mark.mpi(min_size=2)
def test_every_rank_reports_the_same_records_and_summary(tmp_path):
    result = run(config.load(overrides=["rounds=4", "log_every=2"]), tmp_path)
    rounds = [r.round for r in result.records]
    assert rounds == [0, 2, 4]
    everyone = COMM.allgather((rounds, result.summary["final_loss"]))
    assert all(e == everyone[0] for e in everyone)
    assert result.records[-1].loss < result.records[0].loss


@pytest.mark.mpi(min_size=3)
def test_clients_report_their_own_loss_and_accuracy(tmp_path):
    cfg = config.load(overrides=["rounds=3", "evaluate.per_client=true"])
    result = run(cfg, tmp_path)
    k = COMM.size - 1
    spec = model_spec(cfg)
    kernels = ModelKernels(spec)
    losses, accuracies, rows = [], [], []
    for c in range(k):
        shard = client_shard(cfg, c, k)
        loss, correct = kernels.evaluate_sums(shard.X, shard.y, result.theta)
        losses.append(loss / shard.n), accuracies.append(correct / shard.n), rows.append(shard.n)
    if COMM.rank == 0:
        figures = read_client_figures(result.run_dir)
        assert figures["loss"] == pytest.approx(losses, rel=1e-12)
        assert figures["accuracy"] == pytest.approx(accuracies)
    summary = result.records[-1].clients
    assert summary["loss"]["count"] == k and summary["loss"]["max"] == pytest.approx(max(losses), rel=1e-12)
    assert summary["accuracy"]["weighted_mean"] == pytest.approx(np.dot(accuracies, rows) / sum(rows))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("mode", ["federated", "distributed"])
def test_rounds_carry_a_per_rank_time_breakdown(mode, tmp_path):
    result = run(config.load(overrides=[f"mode={mode}", "rounds=3"]), tmp_path)
    for record in result.records[1:]:
        assert set(record.breakdown) == {"compute", "comm", "wait"}
        for low, mean, high in record.breakdown.values():
            assert 0.0 <= low <= mean <= high
        assert 0 <= record.slowest_rank < COMM.size
    assert result.summary["slowest_rank"] in range(COMM.size)


@pytest.mark.mpi(min_size=2)
def test_distributed_lbfgs_equals_serial_lbfgs_on_the_union(tmp_path):
    from mpifl.lbfgs import Lbfgs

    cfg = job("softmax", "mode=distributed", "train.optimizer=lbfgs", "train.tol=0", "rounds=12")
    result = run(cfg, tmp_path)
    shards = [worker_shards(cfg, r, COMM.size)[0] for r in range(COMM.size)]
    X = np.vstack([s.X for s in shards])
    y = np.concatenate([s.y for s in shards])
    spec = model_spec(cfg)

    def objective(x):
        theta = x.reshape(spec.shape)
        return naive.objective("softmax", X, y, theta, 0.01), naive.mean_grad("softmax", X, y, theta, 0.01).ravel()

    opt, x = Lbfgs(spec.size, cfg["train.history"], 0.0), np.zeros(spec.size)
    for _ in range(12):
        opt.step(x, objective)
    assert rel(result.theta.ravel(), x) < 1e-9

"""Every federated algorithm under MPI equals a serial simulation of its paper (mpiexec -n 2 and -n 4)."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from mpi4py import MPI

from mpifl import comm as collectives
from mpifl import config
from mpifl.data.catalog import client_shard, model_spec
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.metrics import read_client_figures
from mpifl.runner import run_job
from mpifl.strategies import STRATEGIES, strategy_params
from mpifl.strategies.sampling import round_plan

COMM = MPI.COMM_WORLD


def run(cfg, tmp_path, name="run"):
    out = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    return run_job(COMM, cfg, out / name, verbose=False)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def simulate(cfg, k):
    """The serial reference: the same clients and plan, the algorithm from tests/naive.py."""
    spec = model_spec(cfg)
    settings = LocalSettings.from_config(cfg)
    trainers = [LocalTrainer(client_shard(cfg, c, k), ModelKernels(spec), settings, cfg["seed"], c) for c in range(k)]

    def plan(rnd):
        return round_plan(cfg["seed"], rnd, k, cfg["server.fraction"], cfg["train.epochs"], cfg["train.stragglers"],
                          cfg["server.drop_stragglers"])

    return naive.federated(cfg["server.strategy"], strategy_params(cfg), trainers, cfg["rounds"], plan, k,
                           spec.shape, cfg["train.lr"], cfg["train.momentum"])


@pytest.mark.mpi(min_size=2)
# fedbuff and fedasync (test_mpi_async.py), fedper and fedrep (test_mpi_personal.py) have their own references
@pytest.mark.parametrize("name", [n for n, cls in STRATEGIES.items() if not cls.asynchronous and not cls.client.keeps_head])
@pytest.mark.parametrize("per_rank", [1, 3])
def test_each_algorithm_equals_its_serial_simulation(name, per_rank, tmp_path):
    """Unequal (Dirichlet) shards, partial participation, stragglers, several clients per rank."""
    k = per_rank * (COMM.size - 1)
    momentum = 0.0 if name == "scaffold" else 0.5  # SCAFFOLD as in its paper; the rest with local momentum
    extra = {"fedprox": ["server.proximal_mu=0.3"], "fedavgm": ["server.momentum=0.8", "server.lr=0.7"],
             "scaffold": ["server.lr=0.9"], "qfedavg": ["server.q=2.0"]}.get(name, [])
    cfg = config.load(overrides=[
        "rounds=5", "log_every=5", f"data.clients={k}", "server.fraction=0.6", "train.epochs=3",
        "train.stragglers=0.5", "train.lr=0.2", f"train.momentum={momentum}", f"server.strategy={name}", *extra,
    ])
    result = run(cfg, tmp_path)
    assert rel(result.theta, simulate(cfg, k)) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_scaffold_with_local_momentum_equals_its_serial_simulation(tmp_path):
    k = 2 * (COMM.size - 1)
    cfg = config.load(overrides=["rounds=4", f"data.clients={k}", "server.fraction=0.5", "train.epochs=2",
                                 "train.momentum=0.7", "train.lr=0.1", "server.strategy=scaffold"])
    assert rel(run(cfg, tmp_path).theta, simulate(cfg, k)) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_dropping_stragglers_equals_its_serial_simulation(tmp_path):
    k = 3 * (COMM.size - 1)
    cfg = config.load(overrides=["rounds=5", f"data.clients={k}", "server.fraction=0.7", "train.epochs=3",
                                 "train.stragglers=0.5", "server.drop_stragglers=true"])
    result = run(cfg, tmp_path)
    assert rel(result.theta, simulate(cfg, k)) < 1e-10
    sampled = max(1, round(0.7 * k))
    assert all(r.participants == sampled - round(0.5 * sampled) for r in result.records[1:])


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("other, overrides", [
    ("fedprox", ["server.proximal_mu=0"]),
    ("fedavgm", ["server.momentum=0", "server.lr=1"]),
])
def test_reductions_to_fedavg_are_bit_for_bit(other, overrides, tmp_path):
    common = ["rounds=6", "server.fraction=0.5", "train.momentum=0.5", "train.stragglers=0.5", "train.epochs=2"]
    fedavg = run(config.load(overrides=common), tmp_path, "fedavg")
    reduced = run(config.load(overrides=[*common, f"server.strategy={other}", *overrides]), tmp_path, other)
    assert np.array_equal(fedavg.theta, reduced.theta)


@pytest.mark.mpi(min_size=2)
def test_fednova_with_equal_local_steps_is_fedavg(tmp_path):
    # full batch: every client takes train.epochs steps whatever its size (unequal Dirichlet shards)
    common = ["rounds=6", "train.batch_size=0", "train.epochs=3", "train.momentum=0.5", "train.lr=0.3"]
    fedavg = run(config.load(overrides=common), tmp_path, "fedavg")
    fednova = run(config.load(overrides=[*common, "server.strategy=fednova"]), tmp_path, "fednova")
    assert rel(fednova.theta, fedavg.theta) < 1e-13
    assert fednova.records[-1].server["tau_eff"] == pytest.approx(naive.fednova_norm(3, 0.5))


# fedbuff, fedasync: test_mpi_async.py; fedper, fedrep (a body-only uplink, a server head no client trains, so no
# server accuracy to reach): test_mpi_personal.py
SYNCHRONOUS = [n for n, cls in STRATEGIES.items() if not cls.asynchronous and not cls.client.keeps_head]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", SYNCHRONOUS)
def test_the_uplink_carries_exactly_the_declared_fields(name, tmp_path, monkeypatch):
    """Payload values sent per trained client: theta's size, twice that for SCAFFOLD."""
    sent = []
    original = collectives.GatherToRoot.__call__

    def counting(self, send, recv, timer, *how):
        if self.mpi_type.Get_size() == 4 and COMM.rank != 0:  # float32: the payload (stats are float64)
            sent.append(self.my_count)
        original(self, send, recv, timer, *how)

    monkeypatch.setattr(collectives.GatherToRoot, "__call__", counting)
    k = 2 * (COMM.size - 1)
    cfg = config.load(overrides=["rounds=3", f"data.clients={k}", "data.partition=iid", "model.dtype=float32",
                                 f"server.strategy={name}"])
    run(cfg, tmp_path)
    size = model_spec(cfg).size
    per_client = 2 * size if name == "scaffold" else size
    expected = [] if COMM.rank == 0 else [2 * per_client] * 3  # two clients per rank, every round
    assert sent == expected


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", SYNCHRONOUS)
def test_documented_defaults_reach_85_percent_on_the_default_job(name, tmp_path):
    result = run(config.load(overrides=[f"server.strategy={name}"]), tmp_path)
    assert result.summary["final_accuracy"] >= 0.85


@pytest.mark.mpi(min_size=2)
def test_clients_report_accuracy_on_their_own_test_rows(tmp_path):
    k = 2 * (COMM.size - 1)
    cfg = config.load(overrides=["data.name=fedprox_synthetic", "data.fedprox_alpha=1", "data.fedprox_beta=1",
                                 f"data.clients={k}", "rounds=3", "train.lr=0.01", "train.batch_size=10",
                                 "evaluate.per_client=true"])
    result = run(cfg, tmp_path)
    from mpifl.data.catalog import resolve

    kernels = ModelKernels(model_spec(cfg))
    own = []
    for data in resolve(cfg).clients(range(k), k):
        _, correct = kernels.evaluate_sums(data.test.X, data.test.y, result.theta)
        own.append(correct / data.test.n)
    last = result.records[-1]
    if COMM.rank == 0:
        figures = read_client_figures(result.run_dir)
        assert figures["client"].tolist() == list(range(k))
        assert figures["test_accuracy"] == pytest.approx(own, rel=1e-12)
    assert last.mean_client_accuracy == pytest.approx(np.mean(own), rel=1e-12)
    assert last.clients["test_accuracy"]["count"] == k
    assert last.clients["test_accuracy"]["min"] == pytest.approx(min(own), rel=1e-12)
    pooled = resolve(cfg).server_test()
    assert pooled.n == sum(d.test.n for d in resolve(cfg).clients(range(k), k))

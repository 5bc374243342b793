"""Training from partition files under MPI: the privacy boundary, and parallel equals serial."""

from __future__ import annotations

from pathlib import Path

import naive
import numpy as np
import pytest
from mpi4py import MPI

from mpifl import audit, config
from mpifl.data import partition_cli, store
from mpifl.data.shards import balanced_blocks
from mpifl.data.catalog import client_shards, model_spec
from mpifl.kernels import ModelKernels
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.runner import run_job
from mpifl.strategies.sampling import sample_clients
from mpifl.metrics import read_client_figures

COMM = MPI.COMM_WORLD


def shared_partition(tmp_path: Path, *args: str) -> Path:
    """Rank 0 partitions the digits; every rank gets the directory."""
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    if COMM.rank == 0:
        assert partition_cli.main(["digits", *args, "--out", str(root / "parts")]) == 0
    COMM.Barrier()
    return root


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("model", [[], ["model.kind=mlp", "model.hidden=[16]"], ["data.client_test_fraction=0.25"]],
                         ids=["softmax", "mlp", "each client's own test rows"])
def test_each_rank_opens_only_its_own_clients_files_and_the_server_none(tmp_path, model):
    n_clients = 3 * (COMM.size - 1)
    root = shared_partition(tmp_path, "--clients", str(n_clients), "--method", "dirichlet", "--alpha", "1")
    cfg = config.load(overrides=[f"data.path={root / 'parts'}", "rounds=3", "evaluate.per_client=true", *model])
    result = run_job(COMM, cfg, root / "run", verbose=False, audit=True)
    if COMM.rank == 0 and cfg.data.client_test_fraction:  # held out of each client's own files, on its own rank
        accuracy = read_client_figures(root / "run")["personal_accuracy"]
        assert accuracy.size == n_clients and not np.isnan(accuracy).any()
    opened = audit.read(root / "run", COMM.rank)
    manifest = store.read_manifest(root / "parts")

    def files_of(entry):
        return {str((root / "parts" / rel).resolve()) for rel in entry["files"]}

    blocks = balanced_blocks([int(c["rows"]) for c in manifest.doc["clients"]], COMM.size - 1)
    mine = blocks[COMM.rank - 1] if COMM.rank else range(0)
    parts = str((root / "parts").resolve())
    client_files = {path for path in opened if path.startswith(parts) and "/client_" in path}
    # exactly its own: none missing (memory-mapped loads are seen), none of another client's
    assert client_files == set().union(*[files_of(manifest.client(k)) for k in mine])
    test_files = files_of(manifest.doc["test"])
    if COMM.rank == 0:
        assert client_files == set() and test_files <= set(opened)
    else:
        assert not test_files & set(opened)
    assert all(mode.startswith("r") for path, mode in opened.items() if str(root / "parts") in path)


@pytest.mark.mpi(min_size=2)
def test_federated_training_from_files_equals_serial_fedavg_over_the_same_files(tmp_path):
    n_clients = 2 * (COMM.size - 1) + 1
    root = shared_partition(tmp_path, "--clients", str(n_clients), "--method", "quantity")
    cfg = config.load(overrides=[f"data.path={root / 'parts'}", "rounds=4", "server.fraction=0.6",
                                 "train.momentum=0.5"])
    result = run_job(COMM, cfg, root / "run", verbose=False)
    spec = model_spec(cfg)
    settings = LocalSettings.from_config(cfg)
    shards = client_shards(cfg, range(n_clients), n_clients)
    trainers = [LocalTrainer(s, ModelKernels(spec), settings, cfg["seed"], k) for k, s in enumerate(shards)]
    theta = spec.zeros()
    for rnd in range(1, cfg["rounds"] + 1):
        mask = sample_clients(cfg["seed"], rnd, n_clients, cfg["server.fraction"])
        total, weight = np.zeros(spec.shape), 0.0
        for k in np.flatnonzero(mask):
            mine = theta.copy()
            trainers[k].train(mine, rnd)
            total += shards[k].n * mine
            weight += shards[k].n
        theta = total / weight
    assert np.max(np.abs(result.theta - theta)) < 1e-12


@pytest.mark.mpi(min_size=2)
def test_distributed_gd_on_a_partition_equals_serial_gd_on_the_union(tmp_path):
    root = shared_partition(tmp_path, "--clients", str(2 * COMM.size), "--method", "iid")
    cfg = config.load(overrides=[f"data.path={root / 'parts'}", "mode=distributed", "rounds=5",
                                 "train.algorithm=gradient_averaging", "train.batch_size=0", "model.l2=0.01"])
    result = run_job(COMM, cfg, root / "run", verbose=False)
    manifest = store.read_manifest(root / "parts")
    parts = [store.load_part(manifest, manifest.client(k), "", np.dtype("float64"), True)
             for k in range(manifest.n_clients)]
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    ref = naive.gradient_descent("softmax", X, y, np.zeros(model_spec(cfg).shape), 5, cfg["train.lr"], 0.01)
    assert np.max(np.abs(result.theta - ref)) / np.max(np.abs(ref)) < 1e-10


@pytest.mark.mpi(min_size=2)
def test_distributed_gd_on_one_npy_file_reads_disjoint_rows_and_equals_serial_gd(tmp_path):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.standard_normal((1001, 6)), rng.integers(0, 2, 1001)])
    if COMM.rank == 0:
        np.save(root / "table.npy", table)
    COMM.Barrier()
    cfg = config.load(overrides=[f"data.path={root / 'table.npy'}", "mode=distributed", "model.kind=logistic",
                                 "data.n_classes=2", "rounds=6", "train.algorithm=gradient_averaging",
                                 "train.batch_size=0", "data.test_fraction=0.1"])
    result = run_job(COMM, cfg, root / "run", verbose=False)
    train = table[: 1001 - 100]
    ref = naive.gradient_descent("logistic", train[:, :6], train[:, 6], np.zeros((1, 7)), 6, cfg["train.lr"], 0.0)
    assert np.max(np.abs(result.theta - ref)) / np.max(np.abs(ref)) < 1e-10
    assert result.records[-1].accuracy is not None

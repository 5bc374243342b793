"""A torch module's buffers on real ranks: FedAvg averages them like the parameters, FedBN keeps them on each
client, and a named head personalises (mpiexec -n 2, -n 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

torch = pytest.importorskip("torch")

from mpifl.data.partition_cli import write_partition  # noqa: E402
from mpifl.rng import Purpose, stream  # noqa: E402

COMM = MPI.COMM_WORLD
N_FEATURES, N_CLASSES = 12, 3


def partition(tmp_path: Path, sizes: tuple[int, ...]) -> tuple[Path, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Clients whose features are shifted apart (their batch statistics differ), written by rank 0."""
    rng = np.random.default_rng(0)
    n = sum(sizes) + 30
    shift = np.concatenate([np.full(s, k, dtype=float) for k, s in enumerate(sizes)] + [np.zeros(30)])
    X = (rng.standard_normal((n, N_FEATURES)) + shift[:, None]).astype(np.float64)
    y = rng.integers(0, N_CLASSES, n).astype(np.float64)
    bounds = np.cumsum((0, *sizes))
    clients = [np.arange(bounds[k], bounds[k + 1]) for k in range(len(sizes))]
    root = COMM.bcast(tmp_path / "parts" if COMM.rank == 0 else None)
    if COMM.rank == 0:
        write_partition(root, X, y, clients, np.arange(bounds[-1], n), np.dtype("float64"), [0.0, 1.0, 2.0],
                        {"source": "shifted gaussians", "method": "given"})
    COMM.Barrier()
    return root, X, y, clients


def hand_fedavg(X, y, clients, batch: int, lr: float) -> np.ndarray:
    """One FedAvg round by hand: each client's plain torch loop from the same start, then the state_dicts
    (parameters and buffers) averaged with weights n_k, as theta lays them out: buffers, then parameters."""
    from mpifl.models.torch_parts import init_seed
    from torch_nets import batch_norm_net

    states, weights = [], []
    for k, rows in enumerate(clients):
        torch.manual_seed(init_seed(0))
        module = batch_norm_net(N_FEATURES, N_CLASSES).double()
        optimizer = torch.optim.SGD(module.parameters(), lr=lr)
        Xk, yk = torch.from_numpy(X[rows]), torch.from_numpy(y[rows]).long()
        order = torch.from_numpy(stream(0, Purpose.SHUFFLE, 1, k).permutation(len(rows)))
        for s in range(0, len(rows), batch):
            b = order[s:s + batch]
            if len(b) < 2:  # BatchNorm cannot train on one row: mpifl drops that batch, as drop_last would
                continue
            optimizer.zero_grad()
            (torch.nn.functional.cross_entropy(module(Xk[b]), yk[b], reduction="sum") / len(b)).backward()
            optimizer.step()
        flat = [t.detach().double().reshape(-1) for t in [*module.buffers(), *module.parameters()]]
        states.append(torch.cat(flat).numpy())
        weights.append(len(rows))
    return np.average(states, axis=0, weights=weights)


@pytest.mark.mpi(min_size=2)
def test_fedavg_of_clients_with_batch_norm_equals_the_hand_computation(tmp_path):
    root, X, y, clients = partition(tmp_path, (40, 26, 33))  # three: one a client rank at -n 4
    result = mpifl.run(None, COMM, data__path=str(root), rounds=1, model__kind="torch",
                       model__module="torch_nets:batch_norm_net", model__dtype="float64", train__batch_size=8,
                       train__lr=0.1)
    expected = hand_fedavg(X, y, clients, 8, 0.1)
    np.testing.assert_allclose(result.model, expected, rtol=1e-9, atol=1e-11)
    assert result.model[64] == pytest.approx((40 * 5 + 26 * 4 + 33 * 4) / 99)  # num_batches_tracked, averaged
    assert result.history[-1]["accuracy"] is not None


@pytest.mark.mpi(min_size=2)
def test_fedbn_keeps_statistics_on_the_clients_and_judges_the_model_on_their_own_rows(tmp_path):
    root, *_ = partition(tmp_path, (60, 60, 60, 60))
    common = dict(data__path=str(root), rounds=4, model__kind="torch", model__module="torch_nets:batch_norm_net",
                  model__buffers="local", model__dtype="float64", train__lr=0.1, train__batch_size=8,
                  data__client_test_fraction=0.25)
    root_dir = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    fedbn = mpifl.run(None, COMM, out=root_dir / "fedbn", evaluate__per_client=True, **common)
    assert fedbn.model.size == 12 * 32 + 32 + 2 * 32 + 32 * 3 + 3  # the parameters only: no statistics travel
    last = fedbn.history[-1]
    assert last["accuracy"] is None and last["test_loss"] is None  # the server has no statistics of its own
    assert last["mean_client_accuracy"] > 1 / N_CLASSES
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, out=root_dir / "fewer", evaluate__per_client=True, **common)
        pair_rank = pair.Get_rank()
        pair.Free()
        assert fewer.model.tobytes() == fedbn.model.tobytes()
        if pair_rank == 0:
            assert fewer.clients()["test_accuracy"].tobytes() == fedbn.clients()["test_accuracy"].tobytes()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy", ["fedper", "fedrep", "ditto"])
def test_a_named_torch_head_personalises(tmp_path, strategy):
    root, *_ = partition(tmp_path, (50, 50, 50))
    out = COMM.bcast(tmp_path / "run" if COMM.rank == 0 else None)
    result = mpifl.run(None, COMM, out=out, evaluate__per_client=True, data__path=str(root), rounds=3,
                       model__kind="torch", model__module="torch_nets:headed",
                       model__head="head", model__dtype="float64", server__strategy=strategy, train__lr=0.1,
                       data__client_test_fraction=0.3, **({"server__head_epochs": 1} if strategy == "fedrep" else {}))
    last = result.history[-1]
    assert last["personal"]["mean"] > 0
    if COMM.rank == 0:
        figures = result.clients()
        assert not np.array_equal(figures["personal_accuracy"], figures["test_accuracy"])  # personal, not global


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("stage", [
    {"compress__uplink": "topk", "compress__ratio": 0.1, "compress__error_feedback": True},
    {"secagg__enabled": True},
    {"privacy__noise_multiplier": 0.5, "privacy__clip": 1.0},
    {"server__exchange": "reduce"},
], ids=["topk", "secagg", "dp", "reduce"])
def test_the_stages_see_only_the_trained_vector_of_a_frozen_body(tmp_path, stage):
    root, *_ = partition(tmp_path, (40, 40, 40))
    result = mpifl.run(None, COMM, data__path=str(root), rounds=2, model__kind="torch",
                       model__module="torch_nets:frozen_body", model__dtype="float64", train__lr=0.1, **stage)
    assert result.model.size == 32 * N_CLASSES + N_CLASSES  # the head alone: the frozen body never travels
    assert np.isfinite(result.model).all()
    assert result.history[-1]["loss"] < result.history[0]["loss"]  # the head trained through the stage

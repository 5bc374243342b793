"""A million clients, on MPI: rank 0 builds no client's rows, a client rank builds only the clients it uses, the
models do not depend on when rows are built or on the rank count, and a sampled evaluation is what a serial one
on the same sample computes."""

import numpy as np
import pytest
from mpi4py import MPI

import mpifl
from mpifl import config
from mpifl.data.catalog import model_spec, resolve
from mpifl.errors import ConfigError
from mpifl.cohort import CohortTraining
from mpifl.kernels import LinearKernels, ModelKernels, MlpKernels
from mpifl.metrics import read_client_figures
from mpifl.strategies.sampling import evaluated, round_plan

COMM = MPI.COMM_WORLD
POPULATION = dict(data__name="synthetic", data__rows_per_rank=20, data__n_classes=10, data__test_rows=200,
                  data__clients=2000, server__fraction=0.01, rounds=4, train__batch_size=10, train__lr=0.1)


@pytest.mark.mpi(min_size=2)
def test_rank_0_builds_no_clients_rows_and_a_client_rank_only_those_it_trains_or_evaluates(built_clients, tmp_path):
    built = built_clients
    out = COMM.bcast(tmp_path / "run" if COMM.rank == 0 else None)
    # a cache too small for the rank's clients: each is built when it is first used
    result = mpifl.run(None, COMM, out=out, data__cache_mib=0, evaluate__fraction=0.01, **POPULATION)
    used = set()
    for rnd in range(POPULATION["rounds"] + 1):
        used |= set(evaluated(0, rnd, 2000, 0.01, None, True, False)[0].tolist())
        if rnd:
            used |= set(np.flatnonzero(round_plan(0, rnd, 2000, 0.01, 1, 0.0, False)).tolist())
    everyone = COMM.allgather(sorted(set(built)))
    assert everyone[0] == []  # the server: its test rows only (their own stream), no client's
    assert sorted(set().union(*map(set, everyone[1:]))) == sorted(used)
    assert len(used) < 2000 // 5  # far from the population
    assert result.history[-1]["evaluated_clients"] == 20


@pytest.mark.mpi(min_size=3)
def test_the_model_is_the_same_bytes_built_lazily_or_up_front_and_on_any_rank_count():
    lazy = mpifl.run(None, COMM, data__cache_mib=0, **POPULATION)
    eager = mpifl.run(None, COMM, data__cache_mib=1024, **POPULATION)
    assert lazy.model.tobytes() == eager.model.tobytes()
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(None, pair, data__cache_mib=0, **POPULATION)
        pair.Free()
        assert fewer.model.tobytes() == lazy.model.tobytes()


@pytest.mark.mpi(min_size=2)
def test_a_sampled_evaluation_summarises_what_a_serial_evaluation_of_the_same_sample_computes(tmp_path):
    out = COMM.bcast(tmp_path / "run" if COMM.rank == 0 else None)
    settings = dict(POPULATION, evaluate__fraction=0.05, evaluate__per_client=True, data__client_test_fraction=0.25)
    result = mpifl.run(None, COMM, out=out, **settings)
    cfg = mpifl.job(None, **settings)
    last = result.history[-1]
    scored, _ = evaluated(cfg.seed, last["round"], 2000, 0.05, None, True, False)
    source, kernels = resolve(cfg), ModelKernels(model_spec(cfg))
    from mpifl.data.shards import with_client_tests

    losses, accuracies, rows, tests = [], [], [], []
    for k in scored:
        data = with_client_tests(source.clients(range(k, k + 1), 2000), range(k, k + 1), 0.25, cfg.seed)[0]
        loss, correct = kernels.evaluate_sums(data.train.X, data.train.y, result.model)
        losses.append(loss / data.train.n), accuracies.append(correct / data.train.n), rows.append(data.train.n)
        tests.append(kernels.evaluate_sums(data.test.X, data.test.y, result.model)[1] / data.test.n)
    summary = last["clients"]
    assert summary["loss"]["count"] == scored.size == 100
    assert summary["loss"]["mean"] == pytest.approx(np.mean(losses), rel=1e-12)
    assert summary["accuracy"]["weighted_mean"] == pytest.approx(np.average(accuracies, weights=rows), rel=1e-12)
    assert [summary["accuracy"][p] for p in ("p10", "p50", "p90")] == pytest.approx(
        np.percentile(accuracies, [10, 50, 90]).tolist())
    assert summary["test_accuracy"]["mean"] == pytest.approx(np.mean(tests), rel=1e-12)
    assert last["loss"] == pytest.approx(np.dot(losses, rows) / np.sum(rows), rel=1e-12)
    if COMM.rank == 0:
        figures = read_client_figures(out, last["round"])
        assert figures["client"].tolist() == scored.tolist()
        assert figures["loss"] == pytest.approx(losses, rel=1e-12)
        assert (out / "metrics.jsonl").stat().st_size < 20_000 * len(result.history)


@pytest.mark.mpi(min_size=2)
def test_per_client_state_that_cannot_fit_is_refused_on_every_rank_before_round_1_with_the_way_out(tmp_path):
    out = COMM.bcast(tmp_path / "run" if COMM.rank == 0 else None)
    with pytest.raises(ConfigError, match=r"needs .*MiB.*state.store = \"disk\""):
        mpifl.run(None, COMM, out=out, server__strategy="scaffold", state__store="memory", state__memory_mib=1,
                  **POPULATION)
    assert not (out / "metrics.jsonl").exists() or len((out / "metrics.jsonl").read_text().splitlines()) == 0


@pytest.mark.mpi(min_size=2)
def test_scaffold_on_disk_trains_as_in_memory_and_bfloat16_state_stays_close(tmp_path):
    root = COMM.bcast(tmp_path if COMM.rank == 0 else None)
    common = dict(POPULATION, server__strategy="scaffold", server__fraction=0.05, train__momentum=0.5)
    memory = mpifl.run(None, COMM, out=root / "memory", **common)
    disk = mpifl.run(None, COMM, out=root / "disk", state__store="disk", **common)
    assert disk.model.tobytes() == memory.model.tobytes()
    if COMM.rank > 0:
        assert any((root / "disk" / "state").glob(f"rank_{COMM.rank:05d}/state.*.bin"))
    narrow = mpifl.run(None, COMM, state__dtype="bfloat16", **common)
    gap = np.abs(narrow.model - memory.model).max() / np.abs(memory.model).max()
    assert 0 < gap < 0.05


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("extra", [dict(server__exchange="reduce"), dict(server__exchange="gather", train__batch_size=0),
                                   dict(model__kind="mlp", model__hidden=[8], server__exchange="reduce")],
                         ids=["reduce", "gather-full-batch", "mlp"])
def test_clients_trained_as_one_cohort_give_the_model_they_give_one_by_one(monkeypatch, extra):
    cohorts = []
    real = CohortTraining.train
    monkeypatch.setattr(CohortTraining, "train", lambda self, *a: cohorts.append(a[1].size) or real(self, *a))
    job = {**POPULATION, "server__fraction": 0.05, "rounds": 3, **extra}
    together = mpifl.run(None, COMM, **job)
    used = COMM.allgather(len(cohorts))
    for kind in (LinearKernels, MlpKernels):
        monkeypatch.setattr(kind, "trains_cohorts", False)
    alone = mpifl.run(None, COMM, **job)
    assert sum(used) >= 3 and COMM.allgather(len(cohorts)) == used  # every round as cohorts, then none
    assert together.model.tobytes() == alone.model.tobytes()

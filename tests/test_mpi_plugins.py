"""A user's strategy, aggregator and codec on real ranks: named in a job or handed over as classes, recorded in the
summary, the same bytes on any rank count, and resumed bitwise (mpiexec -n 2, -n 4)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import mpifl

COMM = MPI.COMM_WORLD
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.fedexp import FedExP  # noqa: E402

EXAMPLES = {"fedexp": ("strategy", "examples.fedexp:FedExP"),
            "numpy_softmax": ("model", "examples.numpy_softmax:NumpySoftmax"),
            "meamed": ("aggregator", "examples.meamed:MeanAroundMedian"),
            "signsgd": ("compression", "examples.signsgd:ScaledSign")}


def shared(tmp_path: Path) -> Path:
    return COMM.bcast(tmp_path if COMM.rank == 0 else None)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_each_example_runs_records_its_class_and_gives_the_same_bytes_on_fewer_ranks(name):
    job = ROOT / "examples" / f"{name}.toml"
    result = mpifl.run(job, COMM, rounds=4)
    field, path = EXAMPLES[name]
    if field == "model":  # the summary has no model key: the config written and the kernels' note name it
        named = result.summary["kernel_variants"]["note"]
        assert named.startswith("a user's gradient function")
    else:
        named = result.summary[field]["uplink"] if field == "compression" else result.summary[field]
        assert named == path
    pair = COMM.Split(0 if COMM.rank < 2 else MPI.UNDEFINED, COMM.rank)
    if pair != MPI.COMM_NULL:
        fewer = mpifl.run(job, pair, rounds=4)
        pair.Free()
        assert fewer.model.tobytes() == result.model.tobytes()


@pytest.mark.mpi(min_size=2)
def test_the_tutorials_strategy_keeps_its_rows_under_auto_and_gives_fedexps_model():
    """Under server.exchange = "auto", from two clients a round, a strategy that sums would take the Reduce; FedExP
    reads each client's row, so the round keeps the Gatherv and the model is FedExP's, not FedAvg's."""
    job = mpifl.job(ROOT / "jobs" / "fedprox_synthetic.toml", rounds=4, train__epochs=2)
    gather = mpifl.run(job, COMM, strategy=FedExP, server__exchange="gather")
    auto = mpifl.run(job, COMM, strategy=FedExP, server__exchange="auto", server__reduce_from=2)
    fedavg = mpifl.run(job, COMM, server__exchange="auto", server__reduce_from=2)
    assert (auto.summary["exchange"], fedavg.summary["exchange"]) == ("gather", "reduce")
    assert auto.model.tobytes() == gather.model.tobytes()
    assert any(r["server"]["server_lr"] > 1.0 for r in auto.history if r["server"])
    assert not np.array_equal(auto.model, fedavg.model)


@pytest.mark.mpi(min_size=2)
def test_a_custom_strategy_handed_over_as_a_class_resumes_bitwise(tmp_path):
    out = shared(tmp_path)
    job = ROOT / "examples" / "fedexp.toml"
    settings = dict(strategy=FedExP, server__fraction=0.5, train__momentum=0.9)
    full = mpifl.run(job, COMM, rounds=6, out=out / "full", **settings)
    mpifl.run(job, COMM, rounds=3, checkpoint__every=3, out=out / "cut", **settings)
    resumed = mpifl.run(job, COMM, rounds=6, checkpoint__every=3, out=out / "cut", resume=True, **settings)
    assert resumed.model.tobytes() == full.model.tobytes()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert any(r["server"] and r["server"]["server_lr"] > 1.0 for r in full.history)  # FedExP extrapolated
    if COMM.rank == 0:
        assert 'strategy = "examples.fedexp:FedExP"' in (out / "cut" / "config.toml").read_text()
    assert np.isfinite(full.model).all()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy, extra", [("fedprox", {"server__proximal_mu": 0.1}), ("scaffold", {})])
def test_a_numpy_function_model_follows_the_local_objectives_hook_as_the_compiled_kernels_do(strategy, extra):
    common = dict(rounds=4, server__strategy=strategy, server__fraction=0.5, train__momentum=0.5,
                  data__clients=6, **extra)
    compiled = mpifl.run(None, COMM, **common)
    numpy = mpifl.run(None, COMM, model__kind="examples.numpy_softmax:NumpySoftmax", **common)
    np.testing.assert_allclose(numpy.model, compiled.model, rtol=0, atol=1e-10)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("overrides, message", [
    ({"server__strategy": "no_such_pkg.algos:FedExP"}, "module 'no_such_pkg.algos' cannot be imported"),
    ({"server__aggregator": "examples.meamed:Missing"}, "module 'examples.meamed' has no 'Missing'"),
    ({"compress__uplink": "examples.fedexp:FedExP"}, "not a usable codec: it must be a subclass of"),
    ({"server__strategy": "examples.fedexp:FedExP", "server__epsilonn": 1.0}, "Unknown key 'server.epsilonn'"),
])
def test_plugin_errors_fail_every_rank_together_with_one_message(overrides, message):
    from mpifl.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        mpifl.run(None, COMM, rounds=2, **overrides)
    assert message in str(info.value) and info.value.collective
    texts = COMM.allgather(str(info.value))
    assert len(set(texts)) == 1

"""Plug-ins from a user's own module: named by module:Class, handed over from Python, or found as entry points,
and checked like the built-ins with errors that say what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import mpifl
from mpifl import config
from mpifl.compression import Codec
from mpifl.constraints import Interval
from mpifl.errors import ConfigError
from mpifl.registry import Registry
from mpifl.strategies import STRATEGIES, RoundResults, Setup, Strategy, check_strategy
from mpifl.strategies.aggregators import Aggregator
from mpifl.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the examples are a user's modules, importable from the repository root

from examples.fedexp import FedExP  # noqa: E402
from examples.meamed import MeanAroundMedian  # noqa: E402
from examples.numpy_softmax import NumpySoftmax  # noqa: E402
from examples.signsgd import ScaledSign  # noqa: E402


def refused(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(overrides=list(overrides))
    return str(info.value)


def test_a_job_names_a_users_classes_by_module_and_class():
    cfg = config.load(overrides=["server.strategy=examples.fedexp:FedExP", "server.epsilon=0.01",
                                 "compress.uplink=examples.signsgd:ScaledSign", "compress.scaled=false"])
    assert STRATEGIES[cfg["server.strategy"]] is FedExP
    assert cfg["server.epsilon"] == 0.01 and cfg["compress.scaled"] is False
    robust = config.load(overrides=["server.aggregator=examples.meamed:MeanAroundMedian", "server.byzantine=2"])
    assert robust["server.byzantine"] == 2  # MeanAroundMedian shares the built-ins' key, declared alike
    # FedExP's step needs every client's exact row, so a robust aggregator is refused as for SCAFFOLD
    assert "server.strategy 'examples.fedexp:FedExP' does not average deltas" in refused(
        "server.strategy=examples.fedexp:FedExP", "server.aggregator=examples.meamed:MeanAroundMedian")


class RowReadingMean(Strategy):
    """The pitfall the tutorial warns of: declares averages_deltas, yet reads each client's delta."""

    averages_deltas = True

    def aggregate(self, rnd, theta, results):
        mean, said = self.combine(results)
        spread = float((results.deltas.reshape(results.count, -1) ** 2).sum())
        return theta + mean.astype(theta.dtype), {"spread": spread, **said}


class DeclaredRowReadingMean(RowReadingMean):
    needs_rows = True


def test_the_tutorials_strategy_is_refused_by_the_exchanges_that_deliver_sums_and_keeps_rows_under_auto():
    from mpifl import stages
    from mpifl.stages.sums import SumStage

    fedexp = "server.strategy=examples.fedexp:FedExP"
    for exchange in (["server.exchange=reduce"], ["secagg.enabled=true"]):
        assert "reads each client's own update" in refused(fedexp, *exchange)
    large = config.load(overrides=[fedexp, "server.exchange=auto", "server.reduce_from=2"])
    assert SumStage not in stages.enabled(large)  # auto keeps the rows FedExP reads
    fedavg = config.load(overrides=["server.exchange=auto", "server.reduce_from=2"])
    assert SumStage in stages.enabled(fedavg)  # where nothing reads rows, auto sums


def test_a_strategy_that_reads_rows_it_did_not_declare_is_stopped_with_the_way_out():
    from mpifl.strategies.base import RowsNotDelivered

    setup = Setup(params={}, n_clients=3, seed=0, fraction=1.0, epochs=1, stragglers=0.0, drop_stragglers=False,
                  local_lr=0.1, local_momentum=0.0, shape=(4,), dtype=np.dtype(np.float64))
    sums = RoundResults.of_sums(np.arange(3), 1, "reduce", np.ones(4), 3.0, 0.0, {})
    with pytest.raises(RowsNotDelivered, match=r"exchange \('reduce'\) delivers only the sum.*needs_rows = True"):
        RowReadingMean(setup).aggregate(1, np.zeros(4), sums)
    rows = RoundResults(np.arange(3), np.ones((3, 4)), np.ones(3), {})
    theta, metrics = RowReadingMean(setup).aggregate(1, np.zeros(4), rows)
    assert metrics["spread"] == 12.0 and (theta == 1.0).all()
    # declared, the same class is refused before round 1 under the Reduce, and auto keeps its rows
    with pytest.raises(ConfigError, match="reads each client's own update"):
        mpifl.job(None, strategy=DeclaredRowReadingMean, server__exchange="reduce")
    from mpifl import stages
    from mpifl.stages.sums import SumStage

    auto = mpifl.job(None, strategy=DeclaredRowReadingMean, server__exchange="auto", server__reduce_from=2)
    assert SumStage not in stages.enabled(auto)


@pytest.mark.parametrize("overrides, message", [
    (["server.strategy=my_missing_pkg.algos:FedExP"],
     "names 'my_missing_pkg.algos:FedExP', but module 'my_missing_pkg.algos' cannot be imported: No module named"),
    (["server.strategy=examples.fedexp:FedExp"], "module 'examples.fedexp' has no 'FedExp'. Its classes: "),
    (["server.strategy=examples.fedexp:"], "must be a name or 'module:Class'"),
    (["server.strategy=examples.meamed:MeanAroundMedian"],
     "not a usable strategy: it must be a subclass of mpifl.strategies.base:Strategy"),
    (["server.aggregator=examples.fedexp:FedExP"], "not a usable aggregator: it must be a subclass of"),
    (["server.strategy=fedexp"], "must be a registered strategy ('fedavg', "),
    (["server.strategy=examples.fedexp:FedExP", "server.epsilonn=1"],
     "Unknown key 'server.epsilonn' in --set server.epsilonn=1. Valid keys in [server]: "),
    (["server.strategy=examples.fedexp:FedExP", "server.epsilon=-1"],
     "The 'server.epsilon' parameter in --set server.epsilon=-1 must be a float in the range (0, inf)"),
    (["server.epsilon=0.1"], "Unknown key 'server.epsilon'"),  # only with the strategy that declares it
    (["compress.uplink=examples.signsgd:ScaledSign", "compress.scaled=2"], "must be a bool (true or false)"),
    (["server.strategy=__main__:FedExP"], "a class defined in a script's __main__, which no other process"),
])
def test_plugin_errors_say_what_failed(overrides, message):
    assert message in refused(*overrides)


class NoAggregate(Strategy):
    pass


class BadDefault(Strategy):
    parameters = {"eta": (-1.0, Interval(float, 0, None, "neither"))}

    def aggregate(self, rnd, theta, results):
        return theta, {}


class BadField(BadDefault):
    parameters = {}
    uplink = ("sqnorm",)


class Clashing(Aggregator):
    parameters = {"radius": (5.0, Interval(float, 0, None))}  # server.radius, but unlike the built-ins'

    def combine(self, rows, weights):
        return rows.mean(axis=0)


@pytest.mark.parametrize("cls, key, message", [
    (NoAggregate, "strategy", "it does not implement aggregate."),
    (BadDefault, "strategy", "the default of parameter 'eta' breaks its own constraint"),
    (BadField, "strategy", "its 'uplink' must be a tuple of mpifl.protocol.Field"),
    (Clashing, "aggregator", "declares the parameter 'server.radius', which mpifl's schema declares too"),
])
def test_bad_declarations_are_refused_with_the_reason(cls, key, message):
    with pytest.raises(ConfigError) as info:
        mpifl.job(None, **{key: cls})
    assert message in str(info.value)


def test_classes_handed_over_from_python_are_recorded_by_their_path():
    job = mpifl.job(None, strategy=FedExP, codec=ScaledSign)
    assert job["server.strategy"] == "examples.fedexp:FedExP"
    assert job["compress.uplink"] == "examples.signsgd:ScaledSign"
    assert mpifl.job(None, aggregator=MeanAroundMedian)["server.aggregator"] == "examples.meamed:MeanAroundMedian"
    assert mpifl.job(None, model=NumpySoftmax)["model.kind"] == "examples.numpy_softmax:NumpySoftmax"
    assert mpifl.job(None, model={"kind": "mlp"})["model.kind"] == "mlp"  # a dict is still a section's overrides
    assert mpifl.job(None, strategy=STRATEGIES["fedprox"])["server.strategy"] == "fedprox"  # a built-in keeps its name


def test_an_installed_packages_entry_point_registers_a_name(tmp_path, monkeypatch):
    info = tmp_path / "my_fl-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-fl\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mpifl.strategies]\nfedexp = examples.fedexp:FedExP\n"
                                           "broken = examples.fedexp:Nothing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("strategy", "server.strategy", Strategy, check_strategy, group="mpifl.strategies")
    with pytest.raises(ConfigError, match="entry point 'broken' of group mpifl.strategies"):
        registry.resolve("fedexp")
    (info / "entry_points.txt").write_text("[mpifl.strategies]\nfedexp = examples.fedexp:FedExP\n")
    registry = Registry("strategy", "server.strategy", Strategy, check_strategy, group="mpifl.strategies")
    assert registry.resolve("fedexp") is FedExP and "fedexp" in list(registry)


def test_fedexp_takes_the_papers_extrapolated_step():
    shape = (2, 3)
    setup = Setup(params={"epsilon": 1e-3}, n_clients=3, seed=0, fraction=1.0, epochs=1, stragglers=0.0,
                  drop_stragglers=False, local_lr=0.1, local_momentum=0.0, shape=shape, dtype=np.dtype(np.float64))
    deltas = np.array([[1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 1.0], [0, 0, 2.0, 0, 0, 0]]).reshape(3, *shape)
    sq = np.array([[1.0], [2.0], [4.0]])
    results = RoundResults(clients=np.arange(3), deltas=deltas, weights=np.ones(3), fields={"sqnorm": sq[:, 0]})
    theta = np.zeros(shape)
    new, said = FedExP(setup).aggregate(1, theta, results)
    mean = deltas.reshape(3, -1).mean(axis=0)  # (0, 0, 2/3, 0, 0, 1/3): |mean|^2 = 5/9
    eta = max(1.0, 7.0 / (2 * 3 * (5 / 9 + 1e-3)))
    assert said["server_lr"] == pytest.approx(eta) and eta > 2
    np.testing.assert_allclose(new.reshape(-1), eta * mean)


def test_mean_around_median_keeps_the_values_nearest_each_median():
    rows = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [100.0, -50.0]])
    combined = MeanAroundMedian({"byzantine": 1}).combine(rows, np.ones(4)).delta
    np.testing.assert_allclose(combined, [1.0, 11.0])  # medians 1.5 and 10.5; the outlier is left out
    assert "keeps n - f = 0" in MeanAroundMedian({"byzantine": 4}).problem(4)


def test_scaled_sign_sends_one_bit_a_value_and_the_mean_magnitude():
    x = np.array([0.5, -1.5, 2.0, -0.25, 0.0, 3.0, -1.0, 0.75, -2.0])
    codec: Codec = ScaledSign(x.size, np.float32, {"scaled": True})
    message = np.zeros(codec.nbytes, dtype=np.uint8)
    sent = codec.encode(x, (0, 1, 2), message)
    assert codec.nbytes == 8 + 2
    np.testing.assert_array_equal(sent, np.abs(x).mean() * np.where(x >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(codec.decode(message, (0, 1, 2)), sent)


@pytest.mark.parametrize("overrides", [
    {"train__algorithm": "local_sgd", "train__momentum": 0.9, "model__l2": 1e-3},
    {"train__algorithm": "gradient_averaging", "train__batch_size": 0, "model__l2": 1e-3},
    {"train__optimizer": "lbfgs", "train__batch_size": 0, "model__l2": 1e-2},
])
def test_a_model_from_a_numpy_function_trains_as_the_compiled_kind_does(overrides):
    from mpi4py import MPI

    common = dict(mode="distributed", rounds=8, data__partition="iid", **overrides)
    compiled = mpifl.run(None, MPI.COMM_SELF, **common)
    numpy = mpifl.run(None, MPI.COMM_SELF, model__kind="examples.numpy_softmax:NumpySoftmax", **common)
    assert numpy.summary["kernel_variants"]["note"].startswith("a user's gradient function")
    np.testing.assert_allclose(numpy.model, compiled.model, rtol=0, atol=1e-10)
    assert [r["loss"] for r in numpy.history] == pytest.approx([r["loss"] for r in compiled.history], rel=1e-10)


def test_a_function_model_must_declare_its_function():
    from mpifl.models.function import GradientModel

    class NoFunction(GradientModel):
        @staticmethod
        def shape(n_features, n_outputs):
            return (n_outputs, n_features + 1)


    assert "does not declare loss_and_gradient" in MODELS.problem(NoFunction)
    assert MODELS.problem(NumpySoftmax) is None


@pytest.mark.parametrize("environ, gpus, device", [
    ({}, 0, "cpu"),
    ({"MPI_LOCALRANKID": "5"}, 4, "cuda:1"),  # MPICH's Hydra
    ({"OMPI_COMM_WORLD_LOCAL_RANK": "2"}, 8, "cuda:2"),  # Open MPI
    ({"SLURM_LOCALID": "7", "MPI_LOCALRANKID": "x"}, 2, "cuda:1"),  # srun; a value that is no rank is passed over
    ({"MPI_LOCALRANKID": "3"}, 0, "cpu"),
])
def test_a_torch_rank_computes_on_its_node_local_rank_mod_the_gpu_count(environ, gpus, device):
    from mpifl.models.torch_parts import device_for

    assert device_for(environ, gpus) == device


def test_a_function_models_step_trains_only_the_slice_it_is_given():
    """FedRep's phases on a user's gradient function: one full-batch step trains the slice as the whole step
    would, and leaves the rest and its velocity as they were."""
    from mpifl.kernels import ModelKernels
    from mpifl.model import ModelSpec

    spec = ModelSpec(MODELS["examples.numpy_softmax:NumpySoftmax"], 5, 3, np.dtype(np.float64), output="softmax")
    kernels = ModelKernels(spec)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12).astype(np.float64)
    theta, velocity = 0.1 * rng.standard_normal(spec.shape), 0.01 * rng.standard_normal(spec.shape)
    order = np.arange(12)
    whole, whole_v = theta.copy(), velocity.copy()
    kernels.sgd_epoch(X, y, whole, whole_v, spec.zeros(), order, 12, 0.1, 0.9, 0.01)
    part, part_v = theta.copy(), velocity.copy()
    trained = slice(4, 11)
    kernels.sgd_epoch(X, y, part, part_v, spec.zeros(), order, 12, 0.1, 0.9, 0.01, None, trained)
    np.testing.assert_array_equal(part.reshape(-1)[trained], whole.reshape(-1)[trained])
    np.testing.assert_array_equal(part_v.reshape(-1)[trained], whole_v.reshape(-1)[trained])
    frozen = np.ones(theta.size, dtype=bool)
    frozen[trained] = False
    assert part.reshape(-1)[frozen].tobytes() == theta.reshape(-1)[frozen].tobytes()
    assert part_v.reshape(-1)[frozen].tobytes() == velocity.reshape(-1)[frozen].tobytes()

"""A round's clients trained as one cohort (mpifl.cohort): NumPy's PCG64 and permutations compiled bit for bit,
each client's delta the bytes it makes alone, and the halves and stages that may take part."""

import numpy as np
import pytest
from conftest import make_problem

from mpifl.kernels import ModelKernels, pcg64
from mpifl.local import LocalSettings, LocalTrainer
from mpifl.model import ModelSpec
from mpifl.models import MODELS
from mpifl.rng import Purpose, entropy_words, stream
from mpifl.data.shards import Shard
from mpifl.stages.sums import SumStage
from mpifl.strategies import STRATEGIES
from mpifl.strategies.base import ClientUpdate


def seeded(*key):
    g = np.empty(pcg64.WORDS, dtype=np.uint64)
    pcg64.seeded(np.array(entropy_words(*key), dtype=np.uint64), g)
    return g


@pytest.mark.parametrize("key", [(0, Purpose.SHUFFLE, 0, 0), (7, Purpose.SHUFFLE, 99, 123456),
                                 (2**40 + 3, Purpose.SHUFFLE, 1, 2**33), (1, Purpose.SYNTHETIC, 5)])
def test_compiled_pcg64_draws_numpys_raw_64_bit_words(key):
    g = seeded(*key)
    ours = [int(pcg64.draw64(g)) for _ in range(50)]
    assert ours == stream(*key).bit_generator.random_raw(50).tolist()


@pytest.mark.parametrize("n", [1, 2, 3, 20, 257, 70_000])
@pytest.mark.parametrize("key", [(0, Purpose.SHUFFLE, 0, 0), (3, Purpose.SHUFFLE, 7, 2**32 + 5), (2**40, Purpose.SHUFFLE, 1, 9)])
def test_compiled_permutations_are_numpys_epoch_after_epoch(key, n):
    reference = stream(*key)
    out = np.empty((3, n), dtype=np.int64)
    pcg64.permutations(np.array(entropy_words(*key), dtype=np.uint64), n, 3, out)
    assert out.tolist() == [reference.permutation(n).tolist() for _ in range(3)]


def alone(kernels, settings, shards, ids, epochs, seed, rnd, theta):
    """Each client trained by its own LocalTrainer, as a round trains it one by one."""
    deltas = []
    for shard, k, e in zip(shards, ids, epochs):
        model = theta.copy()
        LocalTrainer(shard, kernels, settings, seed, int(k)).train(model, rnd, int(e))
        deltas.append((model - theta).reshape(-1))
    return np.stack(deltas)


def together(kernels, settings, shards, ids, epochs, seed, rnd, theta):
    starts = np.concatenate([[0], np.cumsum([s.n for s in shards])]).astype(np.int64)
    X, y = np.concatenate([s.X for s in shards]), np.concatenate([s.y for s in shards])
    deltas = np.full((len(shards), theta.size), np.nan, dtype=theta.dtype)
    kernels.train_cohort(X, y, starts, np.array(entropy_words(seed, Purpose.SHUFFLE, rnd), dtype=np.uint64),
                         np.asarray(ids, dtype=np.int64), np.asarray(epochs, dtype=np.int64), theta, deltas,
                         settings.batch_size, settings.lr, settings.momentum, settings.l2)
    return deltas


def clients_of(spec, sizes, seed=1):
    rng = np.random.default_rng(seed)
    shards = []
    for n in sizes:
        X = rng.standard_normal((n, spec.n_features)).astype(spec.dtype)
        y = (rng.standard_normal(n) if spec.n_classes == 1 else rng.integers(0, spec.n_classes, n)).astype(spec.dtype)
        shards.append(Shard(X, y))
    return shards


SETTINGS = [LocalSettings(1, 4, 0.1, 0.0, 1e-3), LocalSettings(2, 0, 0.05, 0.0, 0.0),
            LocalSettings(3, 5, 0.1, 0.9, 1e-4, reset_state=True)]


@pytest.mark.parametrize("settings", SETTINGS, ids=["minibatch", "full-batch", "momentum-reset"])
@pytest.mark.parametrize("kind,dtype", [("linear", "float64"), ("logistic", "float64"), ("softmax", "float32")])
def test_a_cohort_of_linear_clients_makes_each_clients_own_delta_bytes(kind, dtype, settings):
    spec, *_ = make_problem(kind, 4, 6, dtype)
    kernels = ModelKernels(spec)
    shards = clients_of(spec, [9, 1, 20, 13, 4])
    ids, epochs = [3, 10, 11, 2**32 + 1, 700], [1, 2, 1, 3, 2]
    theta = (0.1 * np.random.default_rng(0).standard_normal(spec.shape)).astype(dtype)
    ours = together(kernels, settings, shards, ids, epochs, 5, 4, theta)
    assert ours.tobytes() == alone(kernels, settings, shards, ids, epochs, 5, 4, theta).tobytes()


@pytest.mark.parametrize("settings", SETTINGS[:2], ids=["minibatch", "full-batch"])
def test_a_cohort_of_mlp_clients_makes_each_clients_own_delta_bytes(settings):
    spec = ModelSpec(MODELS["mlp"], 6, 3, np.dtype(np.float32), output="softmax", hidden=(5,))
    kernels = ModelKernels(spec)
    shards = clients_of(spec, [7, 40, 3])
    theta = (0.2 * np.random.default_rng(2).standard_normal(spec.shape)).astype(spec.dtype)
    ours = together(kernels, settings, shards, [0, 1, 2], [2, 1, 1], 0, 1, theta)
    assert ours.tobytes() == alone(kernels, settings, shards, [0, 1, 2], [2, 1, 1], 0, 1, theta).tobytes()


def test_only_plain_client_halves_train_as_a_cohort():
    assert STRATEGIES["fedavg"].client.trains_plainly() and STRATEGIES["fedadam"].client.trains_plainly()
    assert not any(STRATEGIES[name].client.trains_plainly() for name in ("fedprox", "scaffold", "ditto", "fedrep"))

    class Reporting(ClientUpdate):  # a user's half that reports something of its own
        def report(self, delta, downlink, state, run, out):
            out["norm"][0] = np.linalg.norm(delta)

    assert not Reporting.trains_plainly()


def test_the_reduce_sums_a_stacked_cohort_as_it_sums_its_clients_one_by_one():
    stage = SumStage.__new__(SumStage)
    stage.size, stage.extra, stage.unit_weights = 5, [], False
    stage.length = stage.size + 2
    deltas = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    weights = np.array([4.0, 1.0, 20.0])
    one_by_one = np.stack([stage.vector((w, d, 0.0)) for w, d in zip(weights, deltas)])
    assert stage.stacked(weights, deltas).tobytes() == one_by_one.tobytes()
